//! The broker's sink: every message the broker delivers on this node (an admin publish
//! with the in-process broker, or a message received from Redis) goes to its channel's
//! owner shard, which fans it out to the shards with subscribers.

use crate::mesh::Mesh;
use bytes::Bytes;
use ringcast_broker::{BrokerError, DeliverySink};
use ringcast_shard::{ShardMsg, owner_of};
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
