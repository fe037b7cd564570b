//! Messages this shard sends to other shards, one queue per destination, drained by the
//! reactor glue. A message addressed to this shard itself is handed back to be handled
//! on the spot instead of queued.

use crate::messages::ShardMsg;

/// Outgoing messages by destination shard id.
pub(crate) struct Outbox {
    /// This shard's id: messages for it are not queued.
    own: u16,
    queues: Vec<Vec<ShardMsg>>,
}

impl Outbox {
    /// Queues for a node of `shards` shards, seen from shard `own`.
    pub(crate) fn new(own: u16, shards: u16) -> Self {
        Outbox {
            own,
            queues: (0..shards).map(|_| Vec::new()).collect(),
        }
    }

    /// Queues `msg` for shard `to`; returns it when `to` is this shard (the caller
    /// handles it directly). A message for a shard id out of range is dropped.
    #[must_use]
    pub(crate) fn route(&mut self, to: u16, msg: ShardMsg) -> Option<ShardMsg> {
        if to == self.own {
            return Some(msg);
        }
        if let Some(queue) = self.queues.get_mut(usize::from(to)) {
            queue.push(msg);
        }
        None
    }

    /// Every destination's queue, indexed by shard id.
    pub(crate) fn queues(&mut self) -> &mut [Vec<ShardMsg>] {
        &mut self.queues
    }
}
