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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_messages_come_back_and_others_are_queued() {
        let mut outbox = Outbox::new(1, 3);
        let drain = || ShardMsg::Drain { spread_ms: 5 };
        assert!(outbox.route(1, drain()).is_some());
        assert!(outbox.route(2, drain()).is_none());
        assert!(outbox.route(7, drain()).is_none(), "out of range: dropped");
        let lens: Vec<usize> = outbox.queues().iter().map(Vec::len).collect();
        assert_eq!(lens, [0, 0, 1]);
    }
}
