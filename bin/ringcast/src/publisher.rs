//! The admin API's publish path: validate, hand to the broker; and the broker's sink,
//! which routes each received message to its channel's owner shard.

use crate::mesh::Mesh;
use bytes::Bytes;
use ringcast_broker::{Broker, BrokerError, DeliverySink};
use ringcast_proto::is_valid_channel;
use ringcast_shard::{ShardMsg, owner_of};
use ringcast_telemetry::{PublishError, PublishReceipt, Publisher};
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

impl Publisher for NodePublisher {
    fn publish(
        &self,
        channel: &str,
        payload: Bytes,
        binary: bool,
    ) -> Result<PublishReceipt, PublishError> {
        if !is_valid_channel(channel) {
            return Err(PublishError::BadChannel);
        }
        if payload.len() > self.max_message_bytes {
            return Err(PublishError::TooLarge);
        }
        self.broker
            .publish(channel, payload, binary)
            .map(|()| PublishReceipt { shards: 1 })
            .map_err(|e| PublishError::Unavailable(e.to_string()))
    }
}
