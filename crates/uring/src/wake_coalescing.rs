//! When a reactor's wait gathers completions before waking (interrupt coalescing for
//! io_uring): sans-IO, fed the time of every wait that may sleep.
//!
//! A thread woken for one or two completions pays a whole wake-up: the context switch, the
//! `io_uring_enter` return and a loop turn. Under a steady trickle (pongs from a million
//! idle connections, client messages, publishes at a few thousand per second) those
//! wake-ups, not the work, are most of a shard's CPU. io_uring's min-wait (Linux 6.12+)
//! lets a wait ask for [`WANT`] completions but return once `min_wait` has passed with at
//! least one: the wake-ups of that stretch collapse into one.
//!
//! Gathering only pays when completions come faster than one per `min_wait`: slower, a
//! wait still returns with one completion, later, and has armed a timer for nothing
//! (measured: a shard taking 200 publishes/s over 100 channels gained nothing). So it is
//! switched on per window: waits start to coalesce after a [`WINDOW`] that held at least
//! one sleeping wait per `min_wait` (5,000 wake-ups per second at 200 µs; never fewer
//! than [`MIN_BUSY_WAITS`] a window), and stop after a window with fewer than half as
//! many (2,500 per second): then most waits lasted well over `min_wait`, so completions
//! came too seldom to gather. The gap between the two matters: gathering itself caps the
//! waits at one per `min_wait`, so a single threshold would switch it off every other
//! window. A quiet shard therefore answers its
//! publish or pong at once, and a busy one adds at most `min_wait` to any completion.
//!
//! Calling contract: call [`WakeCoalescing::min_wait_usec`] once per wait that may sleep
//! (not for a wait that returns at once because completions are already pending), with a
//! monotonic `now`; pass its answer as the wait's min-wait. If that wait then brought
//! nothing from outside, only the completions of sends it submitted itself (they finish
//! within the submit, so it never slept), call [`WakeCoalescing::did_not_sleep`]: a
//! shard pushing one publish out in several turns is not woken several times.

use std::time::{Duration, Instant};

/// Completions a coalescing wait asks for: it returns as soon as this many are pending,
/// before `min_wait` is over.
pub(crate) const WANT: usize = 64;
/// Length of the window over which sleeping waits are counted.
pub(crate) const WINDOW: Duration = Duration::from_millis(10);
/// The fewest sleeping waits in one window that start coalescing, however long
/// `min_wait` is (1,000 per second).
pub(crate) const MIN_BUSY_WAITS: u32 = 10;

/// Decides, wait by wait, whether to ask the kernel to gather completions.
#[derive(Debug)]
pub(crate) struct WakeCoalescing {
    /// The longest a wait gathers; 0 never coalesces.
    min_wait_usec: u32,
    /// Sleeping waits in one window that make the next one start coalescing.
    busy_waits: u32,
    window_start: Instant,
    /// Sleeping waits counted in the current window.
    waits: u32,
    /// Whether the previous window was busy (so this one coalesces).
    busy: bool,
}

impl WakeCoalescing {
    /// A policy that gathers for at most `min_wait` (truncated to whole microseconds; zero
    /// turns coalescing off).
    pub(crate) fn new(min_wait: Duration, now: Instant) -> WakeCoalescing {
        let min_wait_usec = u32::try_from(min_wait.as_micros()).unwrap_or(u32::MAX);
        let per_window = WINDOW.as_micros() as u32 / min_wait_usec.max(1);
        WakeCoalescing {
            min_wait_usec,
            busy_waits: per_window.max(MIN_BUSY_WAITS),
            window_start: now,
            waits: 0,
            busy: false,
        }
    }

    /// Counts one wait that may sleep and returns its min-wait in microseconds, or 0 when
    /// this wait should wake on its first completion.
    pub(crate) fn min_wait_usec(&mut self, now: Instant) -> u32 {
        if self.min_wait_usec == 0 {
            return 0;
        }
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            // A window with no wait at all (elapsed ≥ 2 windows) was quiet too.
            let needed = if self.busy {
                self.busy_waits / 2
            } else {
                self.busy_waits
            };
            self.busy = self.waits >= needed && elapsed < 2 * WINDOW;
            self.window_start = now;
            self.waits = 0;
        }
        self.waits += 1;
        if self.busy { self.min_wait_usec } else { 0 }
    }

    /// Uncounts the last wait: it returned only its own sends' completions.
    pub(crate) fn did_not_sleep(&mut self) {
        self.waits = self.waits.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATHER: Duration = Duration::from_micros(200);
    /// One sleeping wait per 200 µs of a 10 ms window.
    const BUSY: u32 = 50;

    /// Feeds `n` waits spread evenly over one window starting at `start`.
    fn waits_in_window(c: &mut WakeCoalescing, start: Instant, n: u32) -> Vec<u32> {
        (0..n)
            .map(|i| c.min_wait_usec(start + WINDOW * i / n))
            .collect()
    }

    #[test]
    fn a_quiet_shard_wakes_on_its_first_completion() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(GATHER, t0);
        for w in 0..100 {
            let got = waits_in_window(&mut c, t0 + WINDOW * w, BUSY - 1);
            assert!(got.iter().all(|&us| us == 0), "window {w}: {got:?}");
        }
    }

    #[test]
    fn a_busy_window_makes_the_next_one_coalesce() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(GATHER, t0);
        let first = waits_in_window(&mut c, t0, BUSY);
        assert!(first.iter().all(|&us| us == 0), "{first:?}");
        let second = waits_in_window(&mut c, t0 + WINDOW, 3);
        assert_eq!(second, vec![200; 3]);
    }

    #[test]
    fn gathering_keeps_going_at_the_rate_it_allows() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(GATHER, t0);
        waits_in_window(&mut c, t0, BUSY);
        // Gathering for 200 µs allows at most 50 waits a window, and usually fewer.
        for w in 1..20 {
            let got = waits_in_window(&mut c, t0 + WINDOW * w, BUSY / 2);
            assert!(got.iter().all(|&us| us == 200), "window {w}: {got:?}");
        }
    }

    #[test]
    fn coalescing_stops_after_a_quiet_window() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(GATHER, t0);
        waits_in_window(&mut c, t0, BUSY);
        waits_in_window(&mut c, t0 + WINDOW, BUSY / 2 - 1);
        let third = waits_in_window(&mut c, t0 + WINDOW * 2, 2);
        assert_eq!(third, vec![0, 0]);
    }

    #[test]
    fn a_long_sleep_after_a_busy_window_does_not_coalesce() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(GATHER, t0);
        waits_in_window(&mut c, t0, BUSY);
        // The next wait comes a second later: the windows in between had no wait at all.
        assert_eq!(c.min_wait_usec(t0 + Duration::from_secs(1)), 0);
    }

    #[test]
    fn a_long_min_wait_still_needs_a_thousand_wake_ups_a_second() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(Duration::from_millis(5), t0);
        waits_in_window(&mut c, t0, MIN_BUSY_WAITS - 1);
        assert_eq!(c.min_wait_usec(t0 + WINDOW), 0);
        waits_in_window(&mut c, t0 + WINDOW, MIN_BUSY_WAITS);
        assert_eq!(c.min_wait_usec(t0 + WINDOW * 2), 5000);
    }

    #[test]
    fn waits_that_only_reaped_their_own_sends_are_not_wake_ups() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(GATHER, t0);
        for i in 0..BUSY * 4 {
            c.min_wait_usec(t0 + WINDOW * i / (BUSY * 4));
            c.did_not_sleep();
        }
        assert_eq!(c.min_wait_usec(t0 + WINDOW), 0);
    }

    #[test]
    fn zero_never_coalesces() {
        let t0 = Instant::now();
        let mut c = WakeCoalescing::new(Duration::ZERO, t0);
        waits_in_window(&mut c, t0, 1000);
        let next = waits_in_window(&mut c, t0 + WINDOW, 1000);
        assert!(next.iter().all(|&us| us == 0));
    }
}
