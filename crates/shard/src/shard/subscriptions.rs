//! A connection's subscriptions and the owner's view of them: joining and leaving the
//! local registry, and telling a channel's owner shard when this shard gains its first
//! or loses its last subscriber (the owner then subscribes the node at the broker), and
//! reporting subscriber counts to the owners (`occupancy`).

use super::Shard;
use crate::ids::{ChannelName, ConnId};
use crate::local_channels::Membership;
use crate::messages::ShardMsg;

impl Shard {
    /// Subscribes `id` to `name`; false if it already was or is at its channel limit.
    pub(super) fn subscribe(&mut self, id: ConnId, name: &str) -> bool {
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        let already = self
            .channels
            .slot_of(name)
            .is_some_and(|slot| conn.channels.contains(slot));
        if already || conn.channels.len() >= self.cfg.max_channels_per_conn {
            return false;
        }
        let (membership, first) = self.channels.subscribe(name, id.idx);
        conn.channels.add(membership);
        if let Some(channel) = self.channels.name_of(membership.channel) {
            self.occupancy.add(channel, 1);
        }
        if let Some(channel) = first {
            self.send_interest(channel, true);
        }
        true
    }

    /// Unsubscribes `id` from `name`; false if it was not subscribed.
    pub(super) fn unsubscribe(&mut self, id: ConnId, name: &str) -> bool {
        let Some(slot) = self.channels.slot_of(name) else {
            return false;
        };
        let Some(membership) = self.conns.get_mut(id).and_then(|c| c.channels.remove(slot)) else {
            return false;
        };
        self.leave(membership);
        true
    }

    /// Unsubscribes `id` from every channel.
    pub(super) fn unsubscribe_all(&mut self, id: ConnId) {
        let memberships = match self.conns.get_mut(id) {
            Some(conn) if !conn.channels.is_empty() => conn.channels.take_all(),
            _ => return,
        };
        for membership in memberships {
            self.leave(membership);
        }
    }

    /// Removes one subscription from the registry, fixing the position of the
    /// connection that moved into its place, and tells the owner when it was the last.
    fn leave(&mut self, membership: Membership) {
        let departure = self.channels.unsubscribe(membership);
        if let Some(channel) = departure
            .emptied
            .as_ref()
            .or_else(|| self.channels.name_of(membership.channel))
        {
            self.occupancy.add(channel, -1);
        }
        if let Some(moved) = departure.moved
            && let Some((_, conn)) = self.conns.get_by_idx_mut(moved)
        {
            conn.channels.set_pos(membership.channel, membership.pos);
        }
        if let Some(channel) = departure.emptied {
            self.send_interest(channel, false);
        }
    }

    /// Tells `channel`'s owner that this shard gained (`on`) or lost its local interest.
    fn send_interest(&mut self, channel: ChannelName, on: bool) {
        let owner = self.owner(&channel);
        let interest = ShardMsg::Interest {
            channel,
            shard: self.cfg.id,
            on,
        };
        self.route(owner, interest);
    }

    /// Sends the subscriber count changes due for a report to their owners, and writes
    /// the ones this shard received as owner into its snapshot (bounded, never waiting).
    pub(super) fn report_occupancy(&mut self, now_ms: u64) {
        for (owner, deltas) in self.occupancy.report(now_ms, self.cfg.shards) {
            self.route(owner, ShardMsg::Occupancy { deltas });
        }
        self.owner_counts.publish();
    }

    /// At the owner: shard `shard` gained or lost its interest in `channel`.
    pub(super) fn interest(&mut self, channel: &ChannelName, shard: u16, on: bool) {
        if let Some(cmd) = self.owned.interest(channel, shard, on, self.now_ms) {
            self.command_broker(cmd);
        }
    }
}
