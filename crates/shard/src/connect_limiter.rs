//! Per-source-IP rate limit: a token bucket per address (burst = one second's worth),
//! pruned of addresses idle for a while so it cannot grow without bound. A shard keeps
//! two: one for new connections (`--connect-rate-per-ip`) and one for channels created by
//! long polls and event streams (`--channel-create-rate-per-ip`).

use std::collections::HashMap;
use std::net::IpAddr;

/// Addresses idle this long are forgotten (their bucket is full again anyway).
const IDLE_MS: u64 = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

/// Token buckets by source address.
#[derive(Debug, Default)]
pub(crate) struct ConnectLimiter {
    per_sec: f64,
    buckets: HashMap<IpAddr, Bucket>,
    last_prune_ms: u64,
}

impl ConnectLimiter {
    /// A limiter allowing `per_sec` new connections per second per address (0 = off).
    pub(crate) fn new(per_sec: u32) -> Self {
        ConnectLimiter {
            per_sec: f64::from(per_sec),
            ..ConnectLimiter::default()
        }
    }

    /// Whether limiting is on.
    pub(crate) fn enabled(&self) -> bool {
        self.per_sec > 0.0
    }

    /// Takes a token for `ip` at `now_ms`; false when the address is over its rate.
    pub(crate) fn allow(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        if !self.enabled() {
            return true;
        }
        self.prune(now_ms);
        let per_sec = self.per_sec;
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: per_sec,
            last_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(bucket.last_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(per_sec);
        bucket.last_ms = now_ms;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Addresses tracked.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn prune(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.last_prune_ms) < IDLE_MS {
            return;
        }
        self.last_prune_ms = now_ms;
        self.buckets
            .retain(|_, b| now_ms.saturating_sub(b.last_ms) < IDLE_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_per_address() {
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let mut limiter = ConnectLimiter::new(5);
        let allowed = (0..10).filter(|_| limiter.allow(a, 1000)).count();
        assert_eq!(allowed, 5);
        assert!(limiter.allow(b, 1000), "other addresses are not affected");
        assert!(!limiter.allow(a, 1100));
        assert!(limiter.allow(a, 1200), "one token back after 200 ms at 5/s");
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let mut limiter = ConnectLimiter::new(1);
        for i in 0..100u8 {
            limiter.allow([10, 0, 0, i].into(), 1);
        }
        assert_eq!(limiter.tracked(), 100);
        limiter.allow([10, 0, 1, 0].into(), 20_000);
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn disabled_allows_everything() {
        let mut limiter = ConnectLimiter::new(0);
        assert!((0..1000).all(|_| limiter.allow([1, 1, 1, 1].into(), 0)));
        assert_eq!(limiter.tracked(), 0);
    }
}
