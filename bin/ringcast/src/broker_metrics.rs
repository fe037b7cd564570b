//! The Redis broker's events, recorded as `ringcast_broker_*` metrics.

use ringcast_broker::{BrokerEvents, RejectReason};
use ringcast_telemetry::{QueueName, names};

/// Records the Redis broker's events as `ringcast_broker_*` metrics.
pub struct BrokerMetrics;

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
