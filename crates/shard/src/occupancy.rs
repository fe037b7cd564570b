//! Channel occupancy counting inside the node, in two halves:
//!
//! - [`PendingDeltas`], on every shard: how each channel's local subscriber count changed
//!   since the last report. A subscribe or leave is one hash-map update (O(1)); about
//!   every [`REPORT_EVERY_MS`] the shard sends the non-zero deltas to each channel's owner
//!   in one `ShardMsg::Occupancy` per owner (at most [`DELTAS_PER_MESSAGE`] each, at most
//!   [`REPORT_PER_TURN`] channels per report), on the same FIFO mesh lane as its
//!   `Interest` messages: no round trip per subscribe.
//! - [`OwnerCounts`], at the owner: the deltas it received and has not yet written into
//!   the node's [`OccupancySnapshot`] (which the sidecar reads). Writing takes the
//!   snapshot's lock with `try_lock` only, so a shard never waits for a reader: when the
//!   admin API or the sidecar holds it, the deltas stay pending until a later turn. At
//!   most [`PUBLISH_PER_TURN`] channels are written per turn.
//!
//! A channel's count at its owner is the sum of every shard's reported deltas; each
//! shard's own contribution is never negative after any of its reports (they are net
//! changes of a real count), so neither is the sum.

use crate::ids::ChannelName;
use crate::occupancy_snapshot::OccupancySnapshot;
use crate::routing::owner_of;
use std::collections::HashMap;

/// How often a shard reports its deltas to the owners, in shard milliseconds.
pub(crate) const REPORT_EVERY_MS: u64 = 50;
/// Most channels one report covers; the rest wait for the next report.
pub(crate) const REPORT_PER_TURN: usize = 16_384;
/// Most deltas in one `ShardMsg::Occupancy`.
pub(crate) const DELTAS_PER_MESSAGE: usize = 1024;
/// Most channels an owner writes into its snapshot per turn.
pub(crate) const PUBLISH_PER_TURN: usize = 4096;

/// A subscriber shard's count changes not yet reported to the owners.
#[derive(Default)]
pub(crate) struct PendingDeltas {
    deltas: HashMap<ChannelName, i32>,
    last_report_ms: u64,
}

impl PendingDeltas {
    /// One more (`+1`) or one fewer (`-1`) local subscriber of `channel`.
    pub(crate) fn add(&mut self, channel: &ChannelName, delta: i32) {
        match self.deltas.get_mut(&**channel) {
            Some(sum) => *sum += delta,
            None => {
                self.deltas.insert(channel.clone(), delta);
            }
        }
    }

    /// When a report is due at `now_ms`: the non-zero deltas (of at most
    /// [`REPORT_PER_TURN`] channels) as messages' contents, each with its owner shard, at
    /// most [`DELTAS_PER_MESSAGE`] per message.
    pub(crate) fn report(
        &mut self,
        now_ms: u64,
        shards: u16,
    ) -> Vec<(u16, Vec<(ChannelName, i32)>)> {
        if self.deltas.is_empty() || now_ms < self.last_report_ms + REPORT_EVERY_MS {
            return Vec::new();
        }
        self.last_report_ms = now_ms;
        let due: Vec<(ChannelName, i32)> = if self.deltas.len() <= REPORT_PER_TURN {
            self.deltas.drain().collect()
        } else {
            let keys: Vec<ChannelName> =
                self.deltas.keys().take(REPORT_PER_TURN).cloned().collect();
            keys.into_iter()
                .filter_map(|k| self.deltas.remove_entry(&k))
                .collect()
        };
        let mut by_owner: Vec<Vec<(ChannelName, i32)>> = vec![Vec::new(); usize::from(shards)];
        let mut out = Vec::new();
        for (channel, delta) in due {
            if delta == 0 {
                continue;
            }
            let owner = owner_of(&channel, usize::from(shards));
            let batch = &mut by_owner[owner];
            batch.push((channel, delta));
            if batch.len() == DELTAS_PER_MESSAGE {
                out.push((owner as u16, std::mem::take(batch)));
            }
        }
        for (owner, batch) in by_owner.into_iter().enumerate() {
            if !batch.is_empty() {
                out.push((owner as u16, batch));
            }
        }
        out
    }
}

/// At the owner: counts received from the shards and not yet in the snapshot.
pub(crate) struct OwnerCounts {
    snapshot: OccupancySnapshot,
    unpublished: HashMap<ChannelName, i64>,
}

impl OwnerCounts {
    /// Counts written into `snapshot`.
    pub(crate) fn new(snapshot: OccupancySnapshot) -> Self {
        OwnerCounts {
            snapshot,
            unpublished: HashMap::new(),
        }
    }

    /// A shard's report.
    pub(crate) fn receive(&mut self, deltas: Vec<(ChannelName, i32)>) {
        for (channel, delta) in deltas {
            *self.unpublished.entry(channel).or_default() += i64::from(delta);
        }
    }

    /// Writes up to [`PUBLISH_PER_TURN`] pending channels into the snapshot, unless a
    /// reader holds it (then nothing, and nothing is waited for). Returns how many
    /// channels were written.
    pub(crate) fn publish(&mut self) -> usize {
        if self.unpublished.is_empty() {
            return 0;
        }
        self.snapshot
            .try_apply(&mut self.unpublished, PUBLISH_PER_TURN)
            .unwrap_or(0)
    }

    /// Channels whose change is not in the snapshot yet.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.unpublished.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ChannelName {
        s.into()
    }

    #[test]
    fn deltas_are_netted_and_sent_to_each_owner_when_due() {
        let mut pending = PendingDeltas::default();
        let (a, b) = (name("a"), name("b"));
        pending.add(&a, 1);
        pending.add(&a, 1);
        pending.add(&b, 1);
        pending.add(&b, -1);
        assert!(pending.report(REPORT_EVERY_MS - 1, 4).is_empty(), "not due");
        let report = pending.report(REPORT_EVERY_MS, 4);
        assert_eq!(
            report,
            vec![(owner_of("a", 4) as u16, vec![(a.clone(), 2)])],
            "b's subscribe and leave cancel out"
        );
        pending.add(&a, -1);
        assert!(
            pending.report(REPORT_EVERY_MS + 10, 4).is_empty(),
            "too soon"
        );
        assert_eq!(
            pending.report(2 * REPORT_EVERY_MS, 4),
            vec![(owner_of("a", 4) as u16, vec![(a, -1)])]
        );
        assert!(pending.report(10 * REPORT_EVERY_MS, 4).is_empty());
    }

    #[test]
    fn a_big_report_is_split_into_bounded_messages() {
        let mut pending = PendingDeltas::default();
        for i in 0..(DELTAS_PER_MESSAGE * 2 + 5) {
            pending.add(&name(&format!("c{i}")), 1);
        }
        let report = pending.report(REPORT_EVERY_MS, 1);
        let sizes: Vec<usize> = report.iter().map(|(_, batch)| batch.len()).collect();
        assert_eq!(sizes, vec![DELTAS_PER_MESSAGE, DELTAS_PER_MESSAGE, 5]);
    }

    #[test]
    fn a_report_covers_a_bounded_number_of_channels() {
        let mut pending = PendingDeltas::default();
        for i in 0..REPORT_PER_TURN + 7 {
            pending.add(&name(&format!("c{i}")), 1);
        }
        let count = |report: Vec<(u16, Vec<(ChannelName, i32)>)>| -> usize {
            report.iter().map(|(_, batch)| batch.len()).sum()
        };
        assert_eq!(count(pending.report(REPORT_EVERY_MS, 2)), REPORT_PER_TURN);
        assert_eq!(
            count(pending.report(2 * REPORT_EVERY_MS, 2)),
            7,
            "the rest next time"
        );
    }

    #[test]
    fn the_owner_publishes_only_when_no_reader_holds_the_snapshot() {
        let snapshot = OccupancySnapshot::default();
        let mut owner = OwnerCounts::new(snapshot.clone());
        owner.receive(vec![(name("a"), 3), (name("b"), 1)]);
        owner.receive(vec![(name("b"), -1)]);
        {
            let _reader = snapshot.hold_for_test();
            assert_eq!(owner.publish(), 0, "never waits for a reader");
            assert_eq!(owner.pending(), 2);
        }
        assert_eq!(owner.publish(), 2);
        assert_eq!(snapshot.count("a"), 3);
        assert_eq!(snapshot.count("b"), 0);
        assert_eq!(owner.pending(), 0);
    }

    #[test]
    fn publishing_is_bounded_per_turn() {
        let snapshot = OccupancySnapshot::default();
        let mut owner = OwnerCounts::new(snapshot.clone());
        owner.receive(
            (0..PUBLISH_PER_TURN + 10)
                .map(|i| (name(&format!("c{i}")), 1))
                .collect(),
        );
        assert_eq!(owner.publish(), PUBLISH_PER_TURN);
        assert_eq!(owner.publish(), 10);
        assert_eq!(snapshot.list("", usize::MAX).len(), PUBLISH_PER_TURN + 10);
    }
}
