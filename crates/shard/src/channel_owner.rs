//! The channels this shard owns for the whole node (`owner_of(channel) == this shard`):
//! which shards have subscribers, each channel's message sequence numbers (the ids of
//! SSE events and long-poll messages), the recent-message ring of channels used by
//! long-poll clients, and when the node gains or loses interest (for the broker).
//!
//! Channels that lost their last subscriber but keep a ring linger for a while; they are
//! found again through an idle list in the order they went idle (the linger is the same
//! for all), so expiry costs O(expired) per tick, not O(owned channels).

use crate::ids::ChannelName;
use crate::messages::BrokerCmd;
use crate::poll_ring::{Kept, PollRing};
use crate::shard_set::ShardSet;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// One owned channel.
#[derive(Debug, Default)]
struct Owned {
    shards: ShardSet,
    /// Sequence number of the last message published.
    last_seq: u64,
    /// Recent messages, once a long-poll client asked for this channel.
    ring: Option<PollRing>,
    /// When the last subscriber left (the entry lingers while it has a ring).
    idle_since_ms: Option<u64>,
}

/// Interest of every shard in the channels this shard owns.
#[derive(Default)]
pub(crate) struct ChannelOwner {
    channels: HashMap<ChannelName, Owned>,
    /// Channels in the order they went idle, with the time; an entry whose channel has
    /// become busy again (or idle again later) since is skipped when it comes up.
    idle: VecDeque<(ChannelName, u64)>,
    ring_cap: usize,
    linger_ms: u64,
}

/// Where a published message goes.
pub(crate) struct Publication<'a> {
    /// Its channel sequence number.
    pub(crate) seq: u64,
    /// Shards with subscribers.
    pub(crate) shards: &'a ShardSet,
    /// Its long-poll encoding, when the channel keeps a ring (shared with the ring).
    pub(crate) kept: Option<Kept>,
}

impl ChannelOwner {
    /// An owner keeping `ring_cap` messages for long-poll channels, for `linger_ms`
    /// after their last subscriber left.
    pub(crate) fn new(ring_cap: usize, linger_ms: u64) -> Self {
        ChannelOwner {
            channels: HashMap::new(),
            idle: VecDeque::new(),
            ring_cap,
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
        if owned.ring.is_some() {
            owned.idle_since_ms = Some(now_ms);
            self.idle.push_back((channel.clone(), now_ms));
            return None;
        }
        self.channels.remove(&**channel);
        Some(BrokerCmd::Unsubscribe(channel.clone()))
    }

    /// Numbers a message published to `channel`, keeps it for long-poll clients, and
    /// says where it goes; None when nobody on the node wants it.
    pub(crate) fn publish(
        &mut self,
        channel: &str,
        payload: &Bytes,
        binary: bool,
    ) -> Option<Publication<'_>> {
        let owned = self.channels.get_mut(channel)?;
        owned.last_seq += 1;
        let kept = owned.ring.as_mut().map(|ring| {
            let kept = Kept::encode(owned.last_seq, payload, binary);
            ring.push(kept.clone());
            kept
        });
        Some(Publication {
            seq: owned.last_seq,
            shards: &owned.shards,
            kept,
        })
    }

    /// A long-poll client asks for messages after `since` (None: only new ones). Starts
    /// keeping a ring for the channel. Returns the kept messages and the last sequence
    /// number.
    pub(crate) fn poll(
        &mut self,
        channel: &ChannelName,
        since: Option<u64>,
        now_ms: u64,
    ) -> (Vec<Kept>, u64) {
        let cap = self.ring_cap;
        let owned = self.channels.entry(channel.clone()).or_default();
        if owned.shards.is_empty() && owned.idle_since_ms.is_none() {
            owned.idle_since_ms = Some(now_ms);
            self.idle.push_back((channel.clone(), now_ms));
        }
        let ring = owned.ring.get_or_insert_with(|| PollRing::new(cap));
        let kept = since.map_or_else(Vec::new, |s| ring.after(s));
        (kept, owned.last_seq)
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

    /// The shards with subscribers of `channel`, if any.
    #[cfg(test)]
    pub(crate) fn interested(&self, channel: &str) -> Option<&ShardSet> {
        self.channels.get(channel).map(|o| &o.shards)
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
        let mut owner = ChannelOwner::new(8, 1000);
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
    fn sequence_numbers_and_the_poll_ring_survive_a_short_gap() {
        let mut owner = ChannelOwner::new(2, 1000);
        let ch: ChannelName = "feed".into();
        owner.interest(&ch, 0, true, 0);
        assert_eq!(
            owner
                .publish("feed", &Bytes::from_static(b"a"), false)
                .map(|p| p.seq),
            Some(1)
        );
        assert_eq!(
            owner.poll(&ch, Some(0), 0),
            (vec![], 1),
            "ring starts with the first poll"
        );
        for body in [&b"b"[..], b"c", b"d"] {
            owner.publish("feed", &Bytes::copy_from_slice(body), false);
        }
        // The poller left; messages published in the gap are still kept.
        assert_eq!(owner.interest(&ch, 0, false, 100), None);
        let p = owner
            .publish("feed", &Bytes::from_static(b"e"), false)
            .expect("kept");
        assert!(p.shards.is_empty());
        let (kept, last) = owner.poll(&ch, Some(3), 150);
        assert_eq!(last, 5);
        assert_eq!(kept.iter().map(|k| k.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(
            owner.interest(&ch, 0, true, 200),
            None,
            "no new broker subscribe"
        );
        assert_eq!(owner.interest(&ch, 0, false, 300), None);
        assert!(owner.expire(1000).is_empty());
        assert_eq!(owner.expire(1300), vec![BrokerCmd::Unsubscribe(ch.clone())]);
        assert!(owner.is_empty());
    }

    #[test]
    fn expiry_visits_only_channels_that_came_due() {
        let mut owner = ChannelOwner::new(2, 1000);
        for i in 0..10_000u32 {
            owner.poll(&format!("c{i}").as_str().into(), None, u64::from(i / 1000));
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
