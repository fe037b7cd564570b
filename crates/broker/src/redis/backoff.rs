//! Reconnect delays: capped exponential backoff with jitter, so a fleet of nodes that lost
//! Redis together does not reconnect in one storm.
//!
//! The n-th delay (from 0) is drawn uniformly from `[d/2, d]` where
//! `d = min(first * 2^n, cap)`. With the defaults (50 ms doubling, capped at 1.6 s) a node
//! retries at most 1.6 s after Redis comes back, so it resubscribes well within 2 s.

use std::time::Duration;

/// Default first delay.
pub(crate) const FIRST_DELAY: Duration = Duration::from_millis(50);
/// Default largest delay.
pub(crate) const MAX_DELAY: Duration = Duration::from_millis(1_600);

/// Produces the delays between reconnect attempts.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    cap: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// Delays from `first` doubling up to `cap`; `seed` drives the jitter.
    pub(crate) fn new(first: Duration, cap: Duration, seed: u64) -> Self {
        Backoff {
            first,
            cap: cap.max(first),
            attempt: 0,
            // xorshift must not start at zero.
            rng: seed | 1,
        }
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let doubled = self
            .first
            .saturating_mul(1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX));
        let ceiling = doubled.min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let span = (ceiling - half).as_micros() as u64;
        let jitter = if span == 0 {
            0
        } else {
            self.random() % (span + 1)
        };
        half + Duration::from_micros(jitter)
    }

    /// Starts over after a successful connection.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_and_stay_under_the_cap() {
        let mut backoff = Backoff::new(FIRST_DELAY, MAX_DELAY, 42);
        let mut ceiling = FIRST_DELAY;
        for _ in 0..40 {
            let d = backoff.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside {ceiling:?}"
            );
            ceiling = (ceiling * 2).min(MAX_DELAY);
        }
        assert!(backoff.next_delay() <= MAX_DELAY);
    }

    #[test]
    fn reset_starts_from_the_first_delay() {
        let mut backoff = Backoff::new(FIRST_DELAY, MAX_DELAY, 7);
        for _ in 0..10 {
            backoff.next_delay();
        }
        backoff.reset();
        assert!(backoff.next_delay() <= FIRST_DELAY);
    }

    #[test]
    fn different_seeds_spread_the_delays() {
        let delays: std::collections::HashSet<Duration> = (0..20u64)
            .map(|seed| {
                let mut b = Backoff::new(FIRST_DELAY, MAX_DELAY, seed * 7919);
                for _ in 0..6 {
                    b.next_delay();
                }
                b.next_delay()
            })
            .collect();
        assert!(delays.len() > 10, "jitter spreads retries: {delays:?}");
    }

    #[test]
    fn zero_delays_do_not_divide_by_zero() {
        let mut backoff = Backoff::new(Duration::ZERO, Duration::ZERO, 0);
        assert_eq!(backoff.next_delay(), Duration::ZERO);
    }
}
