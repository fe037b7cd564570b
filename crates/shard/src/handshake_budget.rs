//! The shard's share of the node's handshake budget (`--max-handshakes-per-sec`): a
//! token bucket (burst = one second's worth) taken from at accept, so a reconnect storm
//! after a restart is answered `503` with a jittered `Retry-After` before any of its
//! requests is read or parsed, and the clients come back spread over a few seconds.

use crate::ids::ConnId;
use ringcast_proto::http_error_response;

/// Shortest and longest `Retry-After` (seconds).
const RETRY_AFTER_SECS: std::ops::RangeInclusive<u64> = 1..=5;

/// A token bucket of handshakes.
#[derive(Debug)]
pub(crate) struct HandshakeBudget {
    per_sec: f64,
    tokens: f64,
    last_ms: u64,
}

impl HandshakeBudget {
    /// A budget of `per_sec` handshakes per second (0 = unlimited), full at time 0.
    pub(crate) fn new(per_sec: u32) -> Self {
        HandshakeBudget {
            per_sec: f64::from(per_sec),
            tokens: f64::from(per_sec),
            last_ms: 0,
        }
    }

    /// Takes one handshake at `now_ms`; false when the budget is spent.
    pub(crate) fn allow(&mut self, now_ms: u64) -> bool {
        if self.per_sec <= 0.0 {
            return true;
        }
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.per_sec);
        self.last_ms = self.last_ms.max(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The `503` for a connection over the budget, with a `Retry-After` of 1-5 s picked
/// from the connection id and the clock, so refused clients spread their retries.
pub(crate) fn over_budget_response(id: ConnId, now_ms: u64) -> Vec<u8> {
    let mut x = (u64::from(id.idx) << 32 | u64::from(id.generation)) ^ now_ms;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    let span = RETRY_AFTER_SECS.end() - RETRY_AFTER_SECS.start() + 1;
    let secs = RETRY_AFTER_SECS.start() + x % span;
    let mut response = http_error_response(503, "Service Unavailable", "too many handshakes\n");
    let header = format!("Retry-After: {secs}\r\n");
    // After the status line: the response head keeps its shape, one header longer.
    let at = response
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(0, |p| p + 2);
    response.splice(at..at, header.into_bytes());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_one_second_then_refills_at_the_rate() {
        let mut budget = HandshakeBudget::new(10);
        assert_eq!((0..30).filter(|_| budget.allow(5)).count(), 10);
        assert!(!budget.allow(50));
        assert!(budget.allow(105), "one token back after 100 ms at 10/s");
        assert!(!budget.allow(105));
    }

    #[test]
    fn zero_is_unlimited() {
        let mut budget = HandshakeBudget::new(0);
        assert!((0..10_000).all(|_| budget.allow(0)));
    }

    #[test]
    fn the_refusal_carries_a_retry_after_of_one_to_five_seconds() {
        let mut seen = std::collections::BTreeSet::new();
        for idx in 0..200 {
            let response = over_budget_response(ConnId { idx, generation: 1 }, 1234);
            let text = String::from_utf8(response).expect("ascii");
            assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\nRetry-After: "));
            let secs: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("Retry-After: "))
                .and_then(|v| v.parse().ok())
                .expect("Retry-After");
            seen.insert(secs);
        }
        assert_eq!(seen, (1..=5).collect());
    }
}
