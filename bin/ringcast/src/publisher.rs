//! The admin API's publish path (validate, hand to the broker), the broker's sink, which
//! routes each received message to its channel's owner shard, and the broker's events,
//! recorded as metrics.

use crate::mesh::Mesh;
use bytes::Bytes;
use ringcast_broker::{Broker, BrokerError, BrokerEvents, DeliverySink, RejectReason};
use ringcast_proto::is_valid_channel;
use ringcast_shard::{ShardMsg, owner_of};
use ringcast_telemetry::names;
use ringcast_telemetry::{PublishError, PublishOutcome, PublishReceipt, Publisher};
use std::sync::Arc;

/// Delivers broker messages to owner shards.
pub struct ShardSink {
    /// Every shard's inbox.
    pub mesh: Arc<Mesh>,
}

impl DeliverySink for ShardSink {
    fn deliver(&self, channel: &str, payload: Bytes, binary: bool) -> Result<(), BrokerError> {
        let owner = owner_of(channel, self.mesh.len());
        let msg = ShardMsg::Publish {
            channel: channel.into(),
            payload,
            binary,
        };
        if !self.mesh.send(owner, msg) {
            return Err(BrokerError::Closed);
        }
        self.mesh.nudge(owner);
        Ok(())
    }
}

/// `POST /publish/<channel>`: checks the request, then publishes through the broker.
pub struct NodePublisher {
    /// Where publishes go.
    pub broker: Arc<dyn Broker>,
    /// Largest accepted body.
    pub max_message_bytes: usize,
}

impl NodePublisher {
    fn check(&self, channel: &str, payload: &Bytes) -> Result<(), PublishError> {
        if !is_valid_channel(channel) {
            return Err(PublishError::BadChannel);
        }
        if payload.len() > self.max_message_bytes {
            return Err(PublishError::TooLarge);
        }
        Ok(())
    }
}

fn outcome(result: Result<(), BrokerError>) -> Result<PublishReceipt, PublishError> {
    match result {
        Ok(()) => Ok(PublishReceipt { shards: 1 }),
        Err(BrokerError::RemoteUnavailable(reason)) => Err(PublishError::RemoteUnavailable(reason)),
        Err(err) => Err(PublishError::Unavailable(err.to_string())),
    }
}

impl Publisher for NodePublisher {
    fn publish(
        &self,
        channel: &str,
        payload: Bytes,
        binary: bool,
    ) -> Result<PublishReceipt, PublishError> {
        self.check(channel, &payload)?;
        outcome(self.broker.publish(channel, payload, binary))
    }

    fn publish_async(&self, channel: &str, payload: Bytes, binary: bool) -> PublishOutcome {
        if let Err(err) = self.check(channel, &payload) {
            return Box::pin(std::future::ready(Err(err)));
        }
        let sent = self.broker.publish_async(channel, payload, binary);
        Box::pin(async move { outcome(sent.await) })
    }
}

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
}
