//! The channels this shard owns for the whole node (`owner_of(channel) == this shard`):
//! which shards have subscribers, and when the node gains or loses interest (for the
//! broker). Positions and kept messages live beside it, in `ChannelHistories`.
//!
//! Channels that lost their last subscriber but were used by long-poll clients linger
//! for a while (so the broker keeps delivering between polls); they are found again
//! through an idle list in the order they went idle (the linger is the same for all),
//! so expiry costs O(expired) per tick, not O(owned channels).

use crate::ids::ChannelName;
use crate::messages::BrokerCmd;
use crate::shard_set::ShardSet;
use std::collections::{HashMap, VecDeque};

/// One owned channel.
#[derive(Debug, Default)]
struct Owned {
    shards: ShardSet,
    /// A long-poll client asked for it: it lingers after its last subscriber.
    polled: bool,
    /// When the last subscriber left (the entry lingers while polled).
    idle_since_ms: Option<u64>,
}

/// Interest of every shard in the channels this shard owns.
#[derive(Default)]
pub(crate) struct ChannelOwner {
    channels: HashMap<ChannelName, Owned>,
    /// Channels in the order they went idle, with the time; an entry whose channel has
    /// become busy again (or idle again later) since is skipped when it comes up.
    idle: VecDeque<(ChannelName, u64)>,
    linger_ms: u64,
}

impl ChannelOwner {
    /// An owner keeping long-poll channels for `linger_ms` after their last subscriber
    /// left.
    pub(crate) fn new(linger_ms: u64) -> Self {
        ChannelOwner {
            channels: HashMap::new(),
            idle: VecDeque::new(),
            linger_ms,
        }
    }

    /// Records that `shard` gained (`on`) or lost its local subscribers of `channel`.
    /// Returns the broker command when node-wide interest went 0→1 or 1→0.
    pub(crate) fn interest(
        &mut self,
        channel: &ChannelName,
        shard: u16,
        on: bool,
        now_ms: u64,
    ) -> Option<BrokerCmd> {
        if on {
            let owned = self.channels.entry(channel.clone()).or_default();
            let was_empty = owned.shards.is_empty();
            owned.shards.insert(shard);
            let resumed = owned.idle_since_ms.take().is_some();
            return (was_empty && !resumed).then(|| BrokerCmd::Subscribe(channel.clone()));
        }
        let owned = self.channels.get_mut(&**channel)?;
        owned.shards.remove(shard);
        if !owned.shards.is_empty() {
            return None;
        }
        if owned.polled {
            owned.idle_since_ms = Some(now_ms);
            self.idle.push_back((channel.clone(), now_ms));
            return None;
        }
        self.channels.remove(&**channel);
        Some(BrokerCmd::Unsubscribe(channel.clone()))
    }

    /// A long-poll client asks for `channel`: it lingers from now on after its last
    /// subscriber leaves.
    pub(crate) fn poll(&mut self, channel: &ChannelName, now_ms: u64) {
        let owned = self.channels.entry(channel.clone()).or_default();
        owned.polled = true;
        if owned.shards.is_empty() && owned.idle_since_ms.is_none() {
            owned.idle_since_ms = Some(now_ms);
            self.idle.push_back((channel.clone(), now_ms));
        }
    }

    /// Forgets long-poll channels idle for longer than the linger; returns the broker
    /// commands for them. Costs O(entries that came due), whatever the number of
    /// channels owned.
    pub(crate) fn expire(&mut self, now_ms: u64) -> Vec<BrokerCmd> {
        let mut gone = Vec::new();
        while let Some((_, since)) = self.idle.front() {
            if now_ms.saturating_sub(*since) < self.linger_ms {
                break;
            }
            let Some((name, since)) = self.idle.pop_front() else {
                break;
            };
            let still_idle = self
                .channels
                .get(&*name)
                .is_some_and(|owned| owned.idle_since_ms == Some(since));
            if still_idle {
                self.channels.remove(&*name);
                gone.push(BrokerCmd::Unsubscribe(name));
            }
        }
        gone
    }

    /// The shards with subscribers of `channel` (empty while it lingers); None when
    /// nobody on the node wants it.
    pub(crate) fn interested(&self, channel: &str) -> Option<&ShardSet> {
        self.channels.get(channel).map(|owned| &owned.shards)
    }

    /// Whether `channel` is owned here (with subscribers, or lingering).
    pub(crate) fn owns(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// Owned channels (with subscribers, or lingering for long-poll clients).
    pub(crate) fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether no channel is owned.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_interest_edges_produce_broker_commands() {
        let mut owner = ChannelOwner::new(1000);
        let ch: ChannelName = "news".into();
        assert_eq!(
            owner.interest(&ch, 1, true, 0),
            Some(BrokerCmd::Subscribe(ch.clone()))
        );
        assert_eq!(owner.interest(&ch, 0, true, 0), None);
        assert_eq!(owner.interest(&ch, 1, true, 0), None);
        assert_eq!(
            owner
                .interested("news")
                .map(|s| s.iter().collect::<Vec<_>>()),
            Some(vec![0, 1])
        );
        assert_eq!(owner.interest(&ch, 1, false, 0), None);
        assert_eq!(
            owner.interest(&ch, 0, false, 0),
            Some(BrokerCmd::Unsubscribe(ch.clone()))
        );
        assert!(owner.interested("news").is_none());
        assert_eq!(owner.interest(&ch, 0, false, 0), None, "unknown channel");
        assert!(owner.is_empty());
    }

    #[test]
    fn a_polled_channel_lingers_after_its_last_subscriber() {
        let mut owner = ChannelOwner::new(1000);
        let ch: ChannelName = "feed".into();
        assert_eq!(
            owner.interest(&ch, 0, true, 0),
            Some(BrokerCmd::Subscribe(ch.clone()))
        );
        owner.poll(&ch, 0);
        // The poller left; the node stays subscribed for the gap between polls.
        assert_eq!(owner.interest(&ch, 0, false, 100), None);
        assert!(owner.interested("feed").is_some_and(ShardSet::is_empty));
        assert_eq!(
            owner.interest(&ch, 0, true, 200),
            None,
            "no new broker subscribe"
        );
        assert_eq!(owner.interest(&ch, 0, false, 300), None);
        assert!(owner.expire(1000).is_empty());
        assert_eq!(owner.expire(1300), vec![BrokerCmd::Unsubscribe(ch.clone())]);
        assert!(owner.is_empty());
        assert!(owner.interested("feed").is_none());
    }

    #[test]
    fn expiry_visits_only_channels_that_came_due() {
        let mut owner = ChannelOwner::new(1000);
        for i in 0..10_000u32 {
            owner.poll(&format!("c{i}").as_str().into(), u64::from(i / 1000));
        }
        let busy: ChannelName = "c0".into();
        owner.interest(&busy, 0, true, 10);
        assert!(owner.expire(999).is_empty());
        assert_eq!(
            owner.idle.len(),
            10_000,
            "nothing came due, nothing visited"
        );
        assert_eq!(owner.expire(1000).len(), 999, "c1..c999; c0 became busy");
        assert_eq!(owner.idle.len(), 9_000);
        // c0 goes idle again later: its stale entry was dropped, the new one counts.
        owner.interest(&busy, 0, false, 2000);
        assert_eq!(owner.expire(1999).len(), 9_000);
        assert!(owner.expire(2999).is_empty());
        assert_eq!(owner.expire(3000), vec![BrokerCmd::Unsubscribe(busy)]);
        assert!(owner.is_empty() && owner.idle.is_empty());
    }
}
