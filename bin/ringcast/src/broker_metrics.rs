//! The Redis broker's events, recorded as `ringcast_broker_*` metrics, each exported
//! from startup (at 0, the broker down) so `increase()` and absent-alerts work before
//! the first event. A node without Redis exports none of them: it has no broker
//! connection that could be up or down.

use ringcast_broker::{BrokerEvents, RejectReason};
use ringcast_telemetry::{QueueName, names};

/// Records the Redis broker's events as `ringcast_broker_*` metrics.
pub struct BrokerMetrics;

impl BrokerMetrics {
    /// Exports every broker counter and gauge before the broker starts: counters at 0
    /// (each rejection reason too), the connection down, no subscriptions.
    pub fn register_all() {
        metrics::gauge!(names::BROKER_UP).set(0.0);
        metrics::gauge!(names::BROKER_SUBSCRIPTIONS).set(0.0);
        for name in [
            names::BROKER_RECONNECTS,
            names::BROKER_MESSAGES_RECEIVED,
            names::BROKER_PUBLISH_ERRORS,
        ] {
            metrics::counter!(name).increment(0);
        }
        for reason in RejectReason::ALL {
            metrics::counter!(names::BROKER_REJECTED, names::LABEL_REASON => reason.as_str())
                .increment(0);
        }
    }
}

impl BrokerEvents for BrokerMetrics {
    fn up(&self, up: bool) {
        metrics::gauge!(names::BROKER_UP).set(if up { 1.0 } else { 0.0 });
    }

    fn reconnected(&self) {
        metrics::counter!(names::BROKER_RECONNECTS).increment(1);
    }

    fn received(&self) {
        metrics::counter!(names::BROKER_MESSAGES_RECEIVED).increment(1);
    }

    fn rejected(&self, reason: RejectReason) {
        metrics::counter!(names::BROKER_REJECTED, names::LABEL_REASON => reason.as_str())
            .increment(1);
    }

    fn subscriptions(&self, count: usize) {
        metrics::gauge!(names::BROKER_SUBSCRIPTIONS).set(count as f64);
    }

    fn publish_failed(&self) {
        metrics::counter!(names::BROKER_PUBLISH_ERRORS).increment(1);
    }

    fn latency(&self, seconds: f64) {
        metrics::histogram!(names::BROKER_LATENCY_SECONDS).record(seconds);
    }

    fn push_backlog_full(&self, times: usize) {
        QueueName::RedisPushes.count_full(times as u64);
    }
}
