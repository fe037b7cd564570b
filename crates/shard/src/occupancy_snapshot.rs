//! The node's channel subscriber counts as one owner shard last wrote them, for readers
//! on other threads (the admin API, the sidecar's occupancy task).
//!
//! One per shard, written only by that shard (the owner of the channels in it) with
//! `try_lock`, so a reader never makes a shard wait; readers hold the lock for work
//! proportional to what they read: a count is one B-tree lookup, a listing walks only
//! the channels it returns (the B-tree is sorted by name, so a prefix is one range), and
//! taking the changes since the last take is O(changes).
//!
//! Besides the counts it records, per channel changed since the last
//! [`OccupancySnapshot::take_changes`], the count at that last take, so the taker sees
//! each channel's net change over its period (a channel that went 0→1→0 in between is
//! not reported).

use crate::ids::ChannelName;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

/// One channel's count before and after a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountChange {
    /// The channel.
    pub channel: ChannelName,
    /// Its subscribers on this node at the previous take.
    pub before: u64,
    /// Its subscribers on this node now.
    pub after: u64,
}

#[derive(Default)]
struct Counts {
    counts: BTreeMap<ChannelName, u64>,
    /// Channel → count at the last take, for channels written since.
    changed: HashMap<ChannelName, u64>,
}

/// Subscriber counts of the channels one shard owns (see the module doc). Cheap to
/// clone: the clones share the counts.
#[derive(Clone, Default)]
pub struct OccupancySnapshot(Arc<Mutex<Counts>>);

impl std::fmt::Debug for OccupancySnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OccupancySnapshot(..)")
    }
}

impl OccupancySnapshot {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies up to `max` of the `pending` deltas (removing them from it), unless the
    /// lock is held: then None, at once. Returns how many channels were written.
    pub(crate) fn try_apply(
        &self,
        pending: &mut HashMap<ChannelName, i64>,
        max: usize,
    ) -> Option<usize> {
        let mut counts = match self.0.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        let batch: Vec<(ChannelName, i64)> = if pending.len() <= max {
            pending.drain().collect()
        } else {
            let keys: Vec<ChannelName> = pending.keys().take(max).cloned().collect();
            keys.into_iter()
                .filter_map(|k| pending.remove_entry(&k))
                .collect()
        };
        let written = batch.len();
        let Counts { counts, changed } = &mut *counts;
        for (channel, delta) in batch {
            let before = counts.get(&*channel).copied().unwrap_or(0);
            let after =
                u64::try_from(i64::try_from(before).unwrap_or(i64::MAX) + delta).unwrap_or(0);
            if before == after {
                continue;
            }
            if after == 0 {
                counts.remove(&*channel);
            } else {
                counts.insert(channel.clone(), after);
            }
            changed.entry(channel).or_insert(before);
        }
        Some(written)
    }

    /// `channel`'s subscribers on this node (0 when it has none or another shard owns
    /// it).
    pub fn count(&self, channel: &str) -> u64 {
        self.lock().counts.get(channel).copied().unwrap_or(0)
    }

    /// Up to `limit` channels whose name starts with `prefix`, in name order, with their
    /// counts. Walks only the channels returned.
    pub fn list(&self, prefix: &str, limit: usize) -> Vec<(ChannelName, u64)> {
        let counts = self.lock();
        counts
            .counts
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
            .take(limit)
            .map(|(name, count)| (name.clone(), *count))
            .collect()
    }

    /// The channels whose count changed since the previous take, with the count then
    /// and now (channels back at the same count left out).
    pub fn take_changes(&self) -> Vec<CountChange> {
        let mut counts = self.lock();
        let changed = std::mem::take(&mut counts.changed);
        changed
            .into_iter()
            .filter_map(|(channel, before)| {
                let after = counts.counts.get(&*channel).copied().unwrap_or(0);
                (before != after).then_some(CountChange {
                    channel,
                    before,
                    after,
                })
            })
            .collect()
    }

    /// Every channel with subscribers and its count (O(channels): for a full resend
    /// after the cluster lost this node's counts).
    pub fn all(&self) -> Vec<(ChannelName, u64)> {
        let counts = self.lock();
        counts
            .counts
            .iter()
            .map(|(name, count)| (name.clone(), *count))
            .collect()
    }

    /// Holds the lock, as a reader would.
    #[cfg(test)]
    pub(crate) fn hold_for_test(&self) -> MutexGuard<'_, impl Sized> {
        self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(snapshot: &OccupancySnapshot, deltas: &[(&str, i64)]) {
        let mut pending: HashMap<ChannelName, i64> = deltas
            .iter()
            .map(|(c, d)| (ChannelName::from(*c), *d))
            .collect();
        assert_eq!(
            snapshot.try_apply(&mut pending, usize::MAX),
            Some(deltas.len())
        );
    }

    #[test]
    fn lists_by_prefix_in_name_order_up_to_the_limit() {
        let snapshot = OccupancySnapshot::default();
        apply(
            &snapshot,
            &[
                ("news.eu", 2),
                ("news.us", 5),
                ("news", 1),
                ("sport", 3),
                ("newt", 1),
            ],
        );
        let names = |v: Vec<(ChannelName, u64)>| {
            v.into_iter()
                .map(|(n, c)| format!("{n}={c}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(snapshot.list("news", 10)),
            ["news=1", "news.eu=2", "news.us=5"]
        );
        assert_eq!(names(snapshot.list("news.", 1)), ["news.eu=2"]);
        assert_eq!(snapshot.list("zzz", 10), vec![]);
        assert_eq!(snapshot.list("", 10).len(), 5);
        assert_eq!(snapshot.count("sport"), 3);
        assert_eq!(snapshot.count("nope"), 0);
    }

    #[test]
    fn changes_are_net_over_the_period() {
        let snapshot = OccupancySnapshot::default();
        apply(&snapshot, &[("a", 1), ("b", 2)]);
        let mut changes = snapshot.take_changes();
        changes.sort_by(|x, y| x.channel.cmp(&y.channel));
        assert_eq!(
            changes,
            vec![
                CountChange {
                    channel: "a".into(),
                    before: 0,
                    after: 1
                },
                CountChange {
                    channel: "b".into(),
                    before: 0,
                    after: 2
                },
            ]
        );
        // a flaps 1→0→1 within the period: no change; b empties.
        apply(&snapshot, &[("a", -1), ("b", -2)]);
        apply(&snapshot, &[("a", 1)]);
        assert_eq!(
            snapshot.take_changes(),
            vec![CountChange {
                channel: "b".into(),
                before: 2,
                after: 0
            }]
        );
        assert!(snapshot.take_changes().is_empty());
        assert_eq!(snapshot.all(), vec![("a".into(), 1)]);
    }

    #[test]
    fn a_count_never_goes_below_zero() {
        let snapshot = OccupancySnapshot::default();
        apply(&snapshot, &[("a", -3)]);
        assert_eq!(snapshot.count("a"), 0);
        assert!(snapshot.take_changes().is_empty());
    }
}
