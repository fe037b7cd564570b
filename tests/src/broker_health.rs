//! A gateway's Redis broker as its metrics tell it: up or not, and the failed attempts
//! counted by reason (`ringcast_broker_rejected_total{reason}`).

use crate::gateway::Gateway;
use crate::metrics::{sum, sum_where};
use std::time::{Duration, Instant};

/// `ringcast_broker_up`.
pub fn broker_up(gateway: &Gateway) -> f64 {
    sum(&gateway.metrics(), "ringcast_broker_up")
}

/// `ringcast_broker_rejected_total{reason}`.
pub fn rejected(gateway: &Gateway, reason: &str) -> f64 {
    sum_where(
        &gateway.metrics(),
        "ringcast_broker_rejected_total",
        Some(("reason", reason)),
    )
}

/// Waits until `gateway` counted at least `at_least` failed attempts for `reason`, at
/// most `secs`; asserts the broker stayed down meanwhile. Returns the count.
pub fn wait_failures(gateway: &Gateway, reason: &str, at_least: f64, secs: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        assert_eq!(broker_up(gateway), 0.0, "the broker came up");
        let count = rejected(gateway, reason);
        if count >= at_least {
            return count;
        }
        assert!(
            Instant::now() < deadline,
            "{count} `{reason}` failures after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
