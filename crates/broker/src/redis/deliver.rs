//! Hands what Redis pushes to the node: a message to its owner shard (held when that
//! shard's inbox is full, see the connection tasks' backpressure), a control request to
//! the sink, a refusal to the counters. Shared by the single connection's task
//! (`session`) and the Redis Cluster task (`cluster::session`).

use super::clock::unix_nanos;
use super::control::Control;
use super::envelope::Position;
use super::inbound::{Inbound, InboundRules};
use super::interest::Interest;
use super::shared::Shared;
use crate::BrokerError;
use bytes::Bytes;
use redis::{PushInfo, PushKind};
use std::sync::Arc;
use std::time::Duration;

/// A message from Redis its owner shard had no room for yet.
pub(crate) struct Held {
    channel: String,
    payload: Bytes,
    binary: bool,
    position: Option<Position>,
}

/// What handling one push led to.
pub(crate) enum Handled {
    /// Delivered, refused or ignored: take the next one.
    Done,
    /// The owner's inbox is full: offer it again later, take nothing else meanwhile.
    Held(Held),
    /// The push says the connection is gone.
    Lost,
}

/// Delivers pushes for the node.
pub(crate) struct Deliverer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rules: InboundRules,
}

impl Deliverer {
    /// Hands `message` to its owner shard; gives it back when the shard's inbox is full.
    pub(crate) fn offer(&self, message: Held) -> Option<Held> {
        match self.shared.sink.deliver(
            &message.channel,
            message.payload.clone(),
            message.binary,
            message.position,
        ) {
            Err(BrokerError::Overloaded) => Some(message),
            // Delivered, or the node is shutting down: nothing more to do with it.
            _ => None,
        }
    }

    /// Handles one push; with `only_wanted` (pattern mode, which receives everything)
    /// only channels with local subscribers go on to the shards.
    pub(crate) fn on_push(&self, push: PushInfo, only_wanted: Option<&Interest>) -> Handled {
        if push.kind == PushKind::Disconnection {
            return Handled::Lost;
        }
        let events = &self.shared.events;
        match self.rules.classify(&push.kind, push.data) {
            Inbound::Ignore => {}
            Inbound::Reject(reason) => {
                events.received();
                events.rejected(reason);
            }
            Inbound::Control(Control::Disconnect { from, target }) => {
                events.received();
                // The node that took the request has carried it out already.
                if from != self.shared.node {
                    tracing::info!(node = %from, ?target, "disconnect asked by another node");
                    self.shared.sink.disconnect(target);
                }
            }
            Inbound::Deliver { channel, message } => {
                events.received();
                if only_wanted.is_some_and(|interest| !interest.wants(&channel)) {
                    return Handled::Done;
                }
                if let Some(at) = message.published_at_ns {
                    let nanos = unix_nanos().saturating_sub(at);
                    events.latency(Duration::from_nanos(nanos).as_secs_f64());
                }
                let held = self.offer(Held {
                    channel,
                    payload: message.payload,
                    binary: message.binary,
                    position: message.position,
                });
                if let Some(held) = held {
                    return Handled::Held(held);
                }
            }
        }
        Handled::Done
    }
}
