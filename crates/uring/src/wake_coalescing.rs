//! When a reactor's wait gathers completions before waking (interrupt coalescing for
//! io_uring): sans-IO, fed the completions that arrive and the time of every wait that
//! may sleep.
//!
//! A thread woken for one or two completions pays a whole wake-up: the context switch, the
//! `io_uring_enter` return and a loop turn. Under a steady stream (pongs from a million
//! idle connections, client messages) those wake-ups, not the work, are most of a shard's
//! CPU. io_uring's min-wait (Linux 6.12+) lets a wait ask for [`WANT`] completions but
//! return once `min_wait` has passed with at least one: the wake-ups of that stretch
//! collapse into one.
//!
//! Gathering only pays when completions arrive faster than one per `min_wait`; slower, a
//! wait still returns with one, later. So it is switched on per window, by the rate of
//! *arrivals*: completions that came from outside (receives, accepts, wakes, connects),
//! not the completions of the reactor's own sends. Waits start to gather after a
//! [`WINDOW`] with at least one arrival per `min_wait` (5,000 a second at 200 µs; with a
//! `min_wait` over 1 ms, at least 1,000 a second) and stop after a window with less than
//! half that rate. A quiet shard therefore answers its publish or pong at once, and a
//! busy one adds at most `min_wait` per wait.
//!
//! Calling contract: after every wait, call [`WakeCoalescing::arrived`] with the number
//! of arrivals it reaped; before every wait that may sleep (not one that returns at once
//! because completions are already pending, nor a zero timeout), call
//! [`WakeCoalescing::min_wait_usec`] with a monotonic `now` and pass its answer as the
//! wait's min-wait.

use std::time::{Duration, Instant};

/// Completions a gathering wait asks for: it returns as soon as this many are pending,
/// before `min_wait` is over.
pub(crate) const WANT: usize = 64;
/// The shortest stretch over which arrivals are counted.
const WINDOW: Duration = Duration::from_millis(10);
/// The longest time per arrival that still counts as busy (1,000 arrivals a second),
/// however long `min_wait` is.
const MAX_BUSY_PERIOD_USEC: u32 = 1000;

/// Decides, wait by wait, whether to ask the kernel to gather completions.
#[derive(Debug)]
pub(crate) struct WakeCoalescing {
    /// The longest a wait gathers; 0 never gathers.
    min_wait_usec: u32,
    /// At least one arrival per this many microseconds starts gathering.
    busy_period_usec: u32,
    window_start: Instant,
    /// Arrivals since `window_start`.
    arrivals: u64,
    /// Whether the waits of the current window gather.
    gathering: bool,
}

impl WakeCoalescing {
    /// A policy that gathers for at most `min_wait` (truncated to whole microseconds; zero
    /// never gathers).
    pub(crate) fn new(min_wait: Duration, now: Instant) -> WakeCoalescing {
        let min_wait_usec = u32::try_from(min_wait.as_micros()).unwrap_or(u32::MAX);
        WakeCoalescing {
            min_wait_usec,
            busy_period_usec: min_wait_usec.clamp(1, MAX_BUSY_PERIOD_USEC),
            window_start: now,
            arrivals: 0,
            gathering: false,
        }
    }

    /// Counts completions that came from outside, reaped by the last wait.
    pub(crate) fn arrived(&mut self, arrivals: usize) {
        self.arrivals += arrivals as u64;
    }

    /// The min-wait in microseconds for a wait that may sleep, or 0 when it should wake
    /// on its first completion.
    pub(crate) fn min_wait_usec(&mut self, now: Instant) -> u32 {
        if self.min_wait_usec == 0 {
            return 0;
        }
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            // Busy: at least one arrival per busy period over the window (half that to
            // stay on, so the rate hovering at the threshold does not flip it every window).
            let needed = elapsed.as_micros() as u64 / u64::from(self.busy_period_usec);
            let needed = if self.gathering { needed / 2 } else { needed };
            self.gathering = self.arrivals >= needed.max(1);
            self.window_start = now;
            self.arrivals = 0;
        }
        if self.gathering {
            self.min_wait_usec
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATHER: Duration = Duration::from_micros(200);
    /// One arrival per 200 µs of a 10 ms window.
    const BUSY: usize = 50;

    /// Spreads `arrivals` over one window starting at `start`, one wait each; returns the
    /// min-waits the waits got.
    fn window(c: &mut WakeCoalescing, start: Instant, arrivals: usize) -> Vec<u32> {
        (0..arrivals)
            .map(|i| {
                let at = start + WINDOW * i as u32 / arrivals as u32;
                let us = c.min_wait_usec(at);
                c.arrived(1);
                us
            })
            .collect()
    }

    #[test]
    fn a_quiet_shard_wakes_on_its_first_completion() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(GATHER, t0);
        for w in 0..100 {
            let got = window(&mut c, t0 + WINDOW * w, BUSY - 1);
            assert!(got.iter().all(|&us| us == 0), "window {w}: {got:?}");
        }
    }

    #[test]
    fn a_busy_window_makes_the_next_one_gather() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(GATHER, t0);
        let first = window(&mut c, t0, BUSY);
        assert!(first.iter().all(|&us| us == 0), "{first:?}");
        assert_eq!(c.min_wait_usec(t0 + WINDOW), 200);
    }

    #[test]
    fn many_arrivals_in_few_waits_count_as_busy() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(GATHER, t0);
        c.min_wait_usec(t0);
        c.arrived(BUSY);
        assert_eq!(c.min_wait_usec(t0 + WINDOW), 200);
    }

    #[test]
    fn gathering_holds_until_the_rate_halves() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(GATHER, t0);
        window(&mut c, t0, BUSY);
        for w in 1..20 {
            let got = window(&mut c, t0 + WINDOW * w, BUSY / 2);
            assert!(got.iter().all(|&us| us == 200), "window {w}: {got:?}");
        }
        window(&mut c, t0 + WINDOW * 20, BUSY / 2 - 1);
        assert_eq!(c.min_wait_usec(t0 + WINDOW * 21), 0);
    }

    #[test]
    fn waits_without_arrivals_are_not_busy() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(GATHER, t0);
        for i in 0..BUSY as u32 * 4 {
            c.min_wait_usec(t0 + WINDOW * i / (BUSY as u32 * 4));
            c.arrived(0);
        }
        assert_eq!(c.min_wait_usec(t0 + WINDOW), 0);
    }

    #[test]
    fn a_long_sleep_after_a_busy_window_does_not_gather() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(GATHER, t0);
        window(&mut c, t0, BUSY);
        c.min_wait_usec(t0 + WINDOW);
        // The next wait comes a second later, with a few arrivals in between.
        c.arrived(10);
        assert_eq!(c.min_wait_usec(t0 + WINDOW + Duration::from_secs(1)), 0);
    }

    #[test]
    fn a_long_min_wait_still_needs_a_thousand_arrivals_a_second() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(Duration::from_millis(5), t0);
        window(&mut c, t0, 9);
        assert_eq!(c.min_wait_usec(t0 + WINDOW), 0);
        c.arrived(10);
        assert_eq!(c.min_wait_usec(t0 + WINDOW * 2), 5000);
    }

    #[test]
    fn zero_never_gathers() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(Duration::ZERO, t0);
        window(&mut c, t0, 1000);
        let next = window(&mut c, t0 + WINDOW, 1000);
        assert!(next.iter().all(|&us| us == 0));
    }
}
