//! The channels this shard owns for the whole node (`owner_of(channel) == this shard`):
//! which shards have subscribers, and when the node as a whole gains or loses interest
//! (which the broker must hear about).

use crate::messages::{BrokerCmd, ChannelName};
use crate::shard_set::ShardSet;
use std::collections::HashMap;

/// Interest of every shard in the channels this shard owns.
#[derive(Default)]
pub struct ChannelOwner {
    channels: HashMap<ChannelName, ShardSet>,
}

impl ChannelOwner {
    /// Records that `shard` gained (`on`) or lost its local subscribers of `channel`.
    /// Returns the broker command when node-wide interest went 0→1 or 1→0.
    pub fn interest(&mut self, channel: &ChannelName, shard: u16, on: bool) -> Option<BrokerCmd> {
        if on {
            let set = self.channels.entry(channel.clone()).or_default();
            let was_empty = set.is_empty();
            set.insert(shard);
            return was_empty.then(|| BrokerCmd::Subscribe(channel.clone()));
        }
        let set = self.channels.get_mut(&**channel)?;
        set.remove(shard);
        if !set.is_empty() {
            return None;
        }
        self.channels.remove(&**channel);
        Some(BrokerCmd::Unsubscribe(channel.clone()))
    }

    /// The shards with subscribers of `channel`, if any.
    pub fn interested(&self, channel: &str) -> Option<&ShardSet> {
        self.channels.get(channel)
    }

    /// Owned channels that have subscribers somewhere.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether no owned channel has subscribers.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_interest_edges_produce_broker_commands() {
        let mut owner = ChannelOwner::default();
        let ch: ChannelName = "news".into();
        assert_eq!(
            owner.interest(&ch, 1, true),
            Some(BrokerCmd::Subscribe(ch.clone()))
        );
        assert_eq!(owner.interest(&ch, 0, true), None);
        assert_eq!(owner.interest(&ch, 1, true), None);
        assert_eq!(
            owner
                .interested("news")
                .map(|s| s.iter().collect::<Vec<_>>()),
            Some(vec![0, 1])
        );
        assert_eq!(owner.interest(&ch, 1, false), None);
        assert_eq!(
            owner.interest(&ch, 0, false),
            Some(BrokerCmd::Unsubscribe(ch.clone()))
        );
        assert!(owner.interested("news").is_none());
        assert_eq!(owner.interest(&ch, 0, false), None, "unknown channel");
        assert!(owner.is_empty());
    }
}
