//! The broker's sink: every message the broker delivers on this node (an admin publish
//! with the in-process broker, or a message received from Redis) goes to its channel's
//! owner shard, which fans it out to the shards with subscribers. The owner's publish
//! lane is bounded: when it is full the message is refused at once with
//! [`BrokerError::Overloaded`] (and counted), never queued elsewhere. A disconnect
//! another node asked for runs on this node's shards like a local one (`disconnect`).

use crate::disconnect::disconnect_shards;
use crate::mesh::{Mesh, Sent};
use bytes::Bytes;
use ringcast_broker::{BrokerError, DeliverySink, DisconnectTarget};
use ringcast_shard::{Epoch, ShardMsg, owner_of};
use ringcast_telemetry::QueueName;
use std::sync::Arc;

/// A broker position as the shards name it (None if its epoch is not a valid one;
/// the envelope checks make that impossible).
pub(crate) fn shard_position(
    position: ringcast_broker::Position,
) -> Option<ringcast_shard::Position> {
    Some(ringcast_shard::Position {
        epoch: Epoch::from_ascii(position.epoch)?,
        offset: position.offset,
    })
}

/// Delivers broker messages to owner shards.
pub struct ShardSink {
    /// Every shard's inbox.
    pub mesh: Arc<Mesh>,
}

impl DeliverySink for ShardSink {
    fn deliver(
        &self,
        channel: &str,
        payload: Bytes,
        binary: bool,
        position: Option<ringcast_broker::Position>,
    ) -> Result<(), BrokerError> {
        let owner = owner_of(channel, self.mesh.len());
        let msg = ShardMsg::Publish {
            channel: channel.into(),
            payload,
            binary,
            position: position.and_then(shard_position),
        };
        let queued = self.mesh.publish(owner, msg);
        self.mesh.nudge(owner);
        match queued {
            Sent::Queued => Ok(()),
            Sent::Full(_) => {
                QueueName::ShardPublish.count_full(1);
                Err(BrokerError::Overloaded)
            }
            Sent::Gone => Err(BrokerError::Closed),
        }
    }

    /// Starts the disconnect on the sidecar's runtime (the broker calls this from its
    /// connection task, which must not wait for the shards) and logs what it closed.
    fn disconnect(&self, target: DisconnectTarget) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                ?target,
                "a disconnect from another node arrived outside the runtime"
            );
            return;
        };
        let mesh = self.mesh.clone();
        runtime.spawn(async move {
            let outcome = disconnect_shards(mesh, target).await;
            tracing::info!(
                disconnected = outcome.disconnected,
                complete = outcome.complete,
                "disconnect from another node done"
            );
        });
    }
}
