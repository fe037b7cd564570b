//! Where each of the node's channels is subscribed in the cluster: the channels with local
//! subscribers (wanted), the master each one is confirmed on (active), and the ones to
//! look at again (dirty). Pure bookkeeping, no I/O: the connection task asks it for a
//! [`Plan`] (which `SSUBSCRIBE`/`SUNSUBSCRIBE` to send to which master, given the slot map
//! and the masters it is connected to) and tells it what Redis confirmed, which node was
//! lost, which channel a node moved away (a `sunsubscribe` Redis sends when a slot
//! migrates), and when the slot map changed.
//!
//! A channel whose master is not connected (down, being failed over, not in the map)
//! stays dirty and waits; it is placed by the first plan after its master is connected.

use super::keyslot::key_slot;
use super::slot_map::SlotMap;
use crate::redis::sentinel::Addr;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One master's share of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NodeWork {
    /// Channels to `SSUBSCRIBE` there.
    pub(crate) subscribe: Vec<Arc<str>>,
    /// Channels to `SUNSUBSCRIBE` there.
    pub(crate) unsubscribe: Vec<Arc<str>>,
}

/// The commands one flush sends, by master; `waiting` wanted channels have no connected
/// master yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) work: Vec<(Arc<Addr>, NodeWork)>,
    pub(crate) waiting: usize,
}

/// The node's channels and where they are subscribed.
#[derive(Debug)]
pub(crate) struct Placement {
    prefix: String,
    wanted: HashSet<Arc<str>>,
    active: HashMap<Arc<str>, Arc<Addr>>,
    dirty: HashSet<Arc<str>>,
}

impl Placement {
    /// Channels named without `prefix`, which their Redis channel (and slot) starts with.
    pub(crate) fn new(prefix: &str) -> Self {
        Placement {
            prefix: prefix.to_owned(),
            wanted: HashSet::new(),
            active: HashMap::new(),
            dirty: HashSet::new(),
        }
    }

    /// The slot of `channel`'s Redis channel.
    pub(crate) fn slot(&self, channel: &str) -> u16 {
        let mut key = Vec::with_capacity(self.prefix.len() + channel.len());
        key.extend_from_slice(self.prefix.as_bytes());
        key.extend_from_slice(channel.as_bytes());
        key_slot(&key)
    }

    /// The node gained (`on`) or lost (`!on`) its local subscribers of `channel`.
    pub(crate) fn set(&mut self, channel: &str, on: bool) {
        let changed = if on {
            self.wanted.insert(Arc::from(channel))
        } else {
            self.wanted.remove(channel)
        };
        if changed {
            self.dirty.insert(Arc::from(channel));
        }
    }

    /// Channels confirmed on some master.
    pub(crate) fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Whether a plan may have work.
    pub(crate) fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The commands that bring the subscriptions in line with `map`, over the masters
    /// `connected` says have a connection. Channels that cannot be placed yet stay dirty.
    pub(crate) fn plan(&mut self, map: &SlotMap, connected: &dyn Fn(&Addr) -> bool) -> Plan {
        let mut work: HashMap<Arc<Addr>, NodeWork> = HashMap::new();
        let mut keep = Vec::new();
        let mut waiting = 0;
        let dirty: Vec<Arc<str>> = self.dirty.drain().collect();
        for channel in dirty {
            let current = self.active.get(&channel).cloned();
            if !self.wanted.contains(&channel) {
                match current {
                    Some(node) if connected(&node) => {
                        work.entry(node).or_default().unsubscribe.push(channel);
                    }
                    Some(_) => {
                        self.active.remove(&channel);
                    }
                    None => {}
                }
                continue;
            }
            let target = map
                .master(self.slot(&channel))
                .filter(|master| connected(master))
                .cloned();
            match (target, current) {
                (Some(target), Some(current)) if target == current => {}
                (Some(target), current) => {
                    if let Some(old) = current.filter(|old| connected(old)) {
                        work.entry(old)
                            .or_default()
                            .unsubscribe
                            .push(channel.clone());
                    }
                    work.entry(target).or_default().subscribe.push(channel);
                }
                (None, _) => {
                    waiting += 1;
                    keep.push(channel);
                }
            }
        }
        self.dirty.extend(keep);
        let mut work: Vec<(Arc<Addr>, NodeWork)> = work.into_iter().collect();
        work.sort_unstable_by(|a, b| (&a.0.host, a.0.port).cmp(&(&b.0.host, b.0.port)));
        for (_, node) in &mut work {
            node.subscribe.sort_unstable();
            node.unsubscribe.sort_unstable();
        }
        Plan { work, waiting }
    }

    /// `node` confirmed these subscriptions.
    pub(crate) fn subscribed(&mut self, node: &Arc<Addr>, channels: &[Arc<str>]) {
        for channel in channels {
            self.active.insert(channel.clone(), node.clone());
        }
    }

    /// `node` confirmed these unsubscriptions.
    pub(crate) fn unsubscribed(&mut self, node: &Addr, channels: &[Arc<str>]) {
        for channel in channels {
            if self.active.get(channel).is_some_and(|at| **at == *node) {
                self.active.remove(channel);
            }
        }
    }

    /// These channels' change was not confirmed: look at them again next time.
    pub(crate) fn retry(&mut self, channels: &[Arc<str>]) {
        self.dirty.extend(channels.iter().cloned());
    }

    /// The connection to `node` is gone with its subscriptions; how many wanted channels
    /// must be placed again.
    pub(crate) fn node_lost(&mut self, node: &Addr) -> usize {
        let lost: Vec<Arc<str>> = self
            .active
            .iter()
            .filter(|(_, at)| ***at == *node)
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in &lost {
            self.active.remove(channel);
        }
        self.dirty.extend(lost.iter().cloned());
        lost.iter().filter(|c| self.wanted.contains(*c)).count()
    }

    /// `node` says it no longer serves `channel` (Redis unsubscribes a slot's channels
    /// when the slot leaves the node); `true` when the node wants it still, so it must be
    /// placed again (after a fresh slot map).
    pub(crate) fn moved_away(&mut self, node: &Addr, channel: &str) -> bool {
        if !self.active.get(channel).is_some_and(|at| **at == *node) {
            return false;
        }
        self.active.remove(channel);
        let wanted = self.wanted.contains(channel);
        if wanted {
            self.dirty.insert(Arc::from(channel));
        }
        wanted
    }

    /// The slot map changed: every channel active on a master that no longer owns its
    /// slot, and every channel still waiting, is looked at again.
    pub(crate) fn remap(&mut self, map: &SlotMap) {
        let moved: Vec<Arc<str>> = self
            .active
            .iter()
            .filter(|(channel, at)| map.master(self.slot(channel)) != Some(*at))
            .map(|(channel, _)| channel.clone())
            .collect();
        self.dirty.extend(moved);
        let waiting: Vec<Arc<str>> = self
            .wanted
            .iter()
            .filter(|c| !self.active.contains_key(*c))
            .cloned()
            .collect();
        self.dirty.extend(waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn node(port: u16) -> Arc<Addr> {
        Arc::new(Addr {
            host: "127.0.0.1".into(),
            port,
        })
    }

    /// Slots 0-8191 on port 1, 8192-16383 on port 2.
    fn map(low: u16, high: u16) -> SlotMap {
        let range = |start: i64, end: i64, port: u16| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![
                    Value::BulkString(b"127.0.0.1".to_vec()),
                    Value::Int(i64::from(port)),
                ]),
            ])
        };
        let answer = Value::Array(vec![range(0, 8191, low), range(8192, 16383, high)]);
        SlotMap::parse(&answer, &node(low)).unwrap()
    }

    /// Two channels, one in each half of the slots.
    fn channels(placement: &Placement) -> (String, String) {
        let mut low = None;
        let mut high = None;
        for i in 0.. {
            let name = format!("ch{i}");
            if placement.slot(&name) < 8192 {
                low.get_or_insert(name);
            } else {
                high.get_or_insert(name);
            }
            if let (Some(low), Some(high)) = (&low, &high) {
                return (low.clone(), high.clone());
            }
        }
        unreachable!()
    }

    fn names(list: &[Arc<str>]) -> Vec<&str> {
        list.iter().map(|c| &**c).collect()
    }

    #[test]
    fn channels_go_to_their_slots_master_and_wait_for_a_connection() {
        let mut placement = Placement::new("rc:");
        let (low, high) = channels(&placement);
        placement.set(&low, true);
        placement.set(&high, true);
        let map = map(1, 2);
        // Only master 1 is connected: the other channel waits.
        let plan = placement.plan(&map, &|a| a.port == 1);
        assert_eq!(plan.waiting, 1);
        assert_eq!(plan.work.len(), 1);
        assert_eq!(plan.work[0].0.port, 1);
        assert_eq!(names(&plan.work[0].1.subscribe), [low.as_str()]);
        placement.subscribed(&plan.work[0].0, &plan.work[0].1.subscribe);
        assert!(placement.has_changes());
        let plan = placement.plan(&map, &|_| true);
        assert_eq!(plan.waiting, 0);
        assert_eq!(plan.work.len(), 1);
        assert_eq!(plan.work[0].0.port, 2);
        placement.subscribed(&plan.work[0].0, &plan.work[0].1.subscribe);
        assert_eq!(placement.active_len(), 2);
        assert!(!placement.has_changes());
    }

    #[test]
    fn a_lost_node_and_a_failover_move_its_channels() {
        let mut placement = Placement::new("rc:");
        let (low, high) = channels(&placement);
        placement.set(&low, true);
        placement.set(&high, true);
        let before = map(1, 2);
        for (master, work) in placement.plan(&before, &|_| true).work {
            placement.subscribed(&master, &work.subscribe);
        }
        assert_eq!(placement.node_lost(&node(2)), 1);
        // Master 2 is still in the map but down: nothing to send, one channel waits.
        let plan = placement.plan(&before, &|a| a.port != 2);
        assert_eq!((plan.work.len(), plan.waiting), (0, 1));
        // Its replica (port 3) took over.
        let after = map(1, 3);
        placement.remap(&after);
        let plan = placement.plan(&after, &|a| a.port != 2);
        assert_eq!(plan.waiting, 0);
        assert_eq!(plan.work.len(), 1);
        assert_eq!(plan.work[0].0.port, 3);
        assert_eq!(names(&plan.work[0].1.subscribe), [high.as_str()]);
        assert!(plan.work[0].1.unsubscribe.is_empty());
    }

    #[test]
    fn a_migrated_slot_moves_its_channel_and_leaves_the_old_master() {
        let mut placement = Placement::new("rc:");
        let (low, _) = channels(&placement);
        placement.set(&low, true);
        let before = map(1, 2);
        for (master, work) in placement.plan(&before, &|_| true).work {
            placement.subscribed(&master, &work.subscribe);
        }
        // The whole low half moves to master 2; the old master still has the channel
        // (no sunsubscribe seen yet): unsubscribe there, subscribe at the new owner.
        let after = map(2, 2);
        placement.remap(&after);
        let plan = placement.plan(&after, &|_| true);
        let by_port: HashMap<u16, NodeWork> =
            plan.work.into_iter().map(|(a, w)| (a.port, w)).collect();
        assert_eq!(names(&by_port[&1].unsubscribe), [low.as_str()]);
        assert_eq!(names(&by_port[&2].subscribe), [low.as_str()]);
        placement.unsubscribed(&node(1), &by_port[&1].unsubscribe);
        placement.subscribed(&node(2), &by_port[&2].subscribe);
        assert_eq!(placement.active_len(), 1);
        // A sunsubscribe from the new owner for a channel it serves: a move.
        assert!(placement.moved_away(&node(2), &low));
        // From a node the channel is not on, or for an unwanted channel: not a move.
        assert!(!placement.moved_away(&node(1), &low));
        placement.set("gone", false);
        assert!(!placement.moved_away(&node(2), "gone"));
    }

    #[test]
    fn unsubscribes_go_where_the_channel_is_and_flapping_costs_nothing() {
        let mut placement = Placement::new("rc:");
        let (low, high) = channels(&placement);
        placement.set(&low, true);
        placement.set(&high, true);
        placement.set(&high, false);
        let map = map(1, 2);
        let plan = placement.plan(&map, &|_| true);
        assert_eq!(plan.work.len(), 1);
        placement.subscribed(&plan.work[0].0, &plan.work[0].1.subscribe);
        placement.set(&low, false);
        let plan = placement.plan(&map, &|_| true);
        assert_eq!(names(&plan.work[0].1.unsubscribe), [low.as_str()]);
        placement.retry(&plan.work[0].1.unsubscribe);
        // Its master gone meanwhile: nothing to send, the channel is forgotten.
        let plan = placement.plan(&map, &|_| false);
        assert_eq!(plan, Plan::default());
        assert_eq!(placement.active_len(), 0);
    }
}
