//! The cluster's slot map as one node told it (`CLUSTER SLOTS`): which master owns each
//! hash slot. Replicas are not kept: reads and writes both go to masters.
//!
//! What a node answers is checked like any other input: at most one range per slot,
//! ranges inside 0..16,384 and not overlapping, ports non-zero, host names short; a
//! master with an unknown endpoint (`?`) leaves its slots unowned, and an empty host
//! means the node that was asked (as the specification says). Slots no range covers are
//! unowned: a channel there has nowhere to go until a later map covers it.

use super::keyslot::SLOTS;
use crate::redis::sentinel::Addr;
use redis::Value;
use std::collections::HashSet;
use std::sync::Arc;

/// Longest host name accepted in a slot map.
const MAX_HOST_BYTES: usize = 255;
/// Most distinct masters accepted in a slot map: Redis Cluster's own recommended
/// ceiling of 1,000 nodes. Each master costs a connection and a task, so a larger
/// answer (a broken or hostile node) is refused rather than followed.
pub(crate) const MAX_MASTERS: usize = 1_000;

/// Which master owns each slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SlotMap {
    /// `(first slot, last slot, master)`, sorted, not overlapping.
    ranges: Vec<(u16, u16, Arc<Addr>)>,
    /// Every master, each once, in slot order (one `Arc` each, shared with `ranges`).
    masters: Vec<Arc<Addr>>,
}

/// Why an answer is not a usable slot map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable CLUSTER SLOTS answer: {0}")]
pub(crate) struct BadSlotMap(pub(crate) String);

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` answer from the node at `asked`.
    pub(crate) fn parse(answer: &Value, asked: &Addr) -> Result<SlotMap, BadSlotMap> {
        let bad = |what: &str| BadSlotMap(what.to_owned());
        let Value::Array(entries) = answer else {
            return Err(bad("not an array"));
        };
        if entries.len() > usize::from(SLOTS) {
            return Err(bad("more ranges than slots"));
        }
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Array(fields) = entry else {
                return Err(bad("a range is not an array"));
            };
            let (Some(start), Some(end), Some(master)) =
                (int(fields.first()), int(fields.get(1)), fields.get(2))
            else {
                return Err(bad("a range lacks its slots or master"));
            };
            if start < 0 || end < start || end >= i64::from(SLOTS) {
                return Err(BadSlotMap(format!("slots {start}-{end} out of range")));
            }
            if let Some(master) = endpoint(master, asked)? {
                ranges.push((start as u16, end as u16, Arc::new(master)));
            }
        }
        ranges.sort_unstable_by_key(|(start, _, _)| *start);
        if ranges.windows(2).any(|w| w[1].0 <= w[0].1) {
            return Err(bad("overlapping ranges"));
        }
        // One Arc per master, so masters compare and clone cheaply.
        let mut known: HashSet<Arc<Addr>> = HashSet::new();
        let mut masters: Vec<Arc<Addr>> = Vec::new();
        for range in &mut ranges {
            match known.get(&range.2) {
                Some(master) => range.2 = master.clone(),
                None => {
                    if masters.len() == MAX_MASTERS {
                        return Err(BadSlotMap(format!("more than {MAX_MASTERS} masters")));
                    }
                    known.insert(range.2.clone());
                    masters.push(range.2.clone());
                }
            }
        }
        Ok(SlotMap { ranges, masters })
    }

    /// The master owning `slot`, if any.
    pub(crate) fn master(&self, slot: u16) -> Option<&Arc<Addr>> {
        let i = self.ranges.partition_point(|(start, _, _)| *start <= slot);
        let (_, end, master) = self.ranges.get(i.checked_sub(1)?)?;
        (slot <= *end).then_some(master)
    }

    /// Every master, each once, in slot order.
    pub(crate) fn masters(&self) -> &[Arc<Addr>] {
        &self.masters
    }

    /// Slots owned by no master.
    pub(crate) fn unowned(&self) -> usize {
        let owned: usize = self
            .ranges
            .iter()
            .map(|(start, end, _)| usize::from(end - start) + 1)
            .sum();
        usize::from(SLOTS) - owned
    }
}

fn int(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.clone()),
        _ => None,
    }
}

/// A master's `[host, port, id, ...]`; `None` when its endpoint is unknown (`?`).
fn endpoint(master: &Value, asked: &Addr) -> Result<Option<Addr>, BadSlotMap> {
    let bad = |what: &str| BadSlotMap(what.to_owned());
    let Value::Array(fields) = master else {
        return Err(bad("a master is not an array"));
    };
    let host = match fields.first() {
        Some(Value::Nil) => String::new(),
        Some(value) => text(value).ok_or_else(|| bad("a master's host is not text"))?,
        None => return Err(bad("a master lacks its host")),
    };
    let port = int(fields.get(1)).ok_or_else(|| bad("a master lacks its port"))?;
    if host == "?" {
        return Ok(None);
    }
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| BadSlotMap(format!("port {port} out of range")))?;
    if host.len() > MAX_HOST_BYTES || host.contains([' ', '/', ',', '@']) {
        return Err(bad("a master's host is not a host name"));
    }
    let host = if host.is_empty() {
        asked.host.clone()
    } else {
        host
    };
    Ok(Some(Addr { host, port }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Addr {
        Addr {
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn range(start: i64, end: i64, host: Value, port: i64) -> Value {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(vec![host, Value::Int(port), bulk("id")]),
            // A replica, ignored.
            Value::Array(vec![bulk("127.0.0.1"), Value::Int(1), bulk("r")]),
        ])
    }

    #[test]
    fn a_three_master_map_routes_every_slot() {
        let answer = Value::Array(vec![
            range(10923, 16383, bulk("127.0.0.1"), 7002),
            range(0, 5460, bulk("127.0.0.1"), 7000),
            range(5461, 10922, bulk("127.0.0.1"), 7001),
        ]);
        let map = SlotMap::parse(&answer, &addr(7000)).unwrap();
        assert_eq!(map.unowned(), 0);
        assert_eq!(**map.master(0).unwrap(), addr(7000));
        assert_eq!(**map.master(5460).unwrap(), addr(7000));
        assert_eq!(**map.master(5461).unwrap(), addr(7001));
        assert_eq!(**map.master(16383).unwrap(), addr(7002));
        assert_eq!(map.master(16384), None);
        assert_eq!(
            map.masters().iter().map(|m| m.port).collect::<Vec<_>>(),
            [7000, 7001, 7002]
        );
    }

    #[test]
    fn gaps_unknown_and_empty_endpoints() {
        let answer = Value::Array(vec![
            range(0, 99, Value::Nil, 7005),
            range(100, 199, bulk("?"), 7006),
            range(300, 300, bulk(""), 7007),
        ]);
        let map = SlotMap::parse(&answer, &addr(7000)).unwrap();
        assert_eq!(**map.master(50).unwrap(), addr(7005));
        assert_eq!(map.master(150), None, "unknown endpoint");
        assert_eq!(map.master(250), None, "a gap");
        assert_eq!(**map.master(300).unwrap(), addr(7007));
        assert_eq!(map.master(301), None);
        assert_eq!(map.unowned(), 16384 - 101);
        assert_eq!(SlotMap::default().master(0), None);
    }

    #[test]
    fn bad_answers_are_refused() {
        let overlapping = Value::Array(vec![
            range(0, 100, bulk("a"), 1),
            range(100, 200, bulk("b"), 2),
        ]);
        let not_array = Value::Int(3);
        let out_of_range = Value::Array(vec![range(0, 16384, bulk("a"), 1)]);
        let reversed = Value::Array(vec![range(10, 9, bulk("a"), 1)]);
        let bad_port = Value::Array(vec![range(0, 1, bulk("a"), 70000)]);
        let zero_port = Value::Array(vec![range(0, 1, bulk("a"), 0)]);
        let bad_host = Value::Array(vec![range(0, 1, bulk("a b"), 1)]);
        let long_host = Value::Array(vec![range(0, 1, bulk(&"h".repeat(256)), 1)]);
        let short = Value::Array(vec![Value::Array(vec![Value::Int(0)])]);
        let too_many = Value::Array(vec![range(0, 0, bulk("a"), 1); 16385]);
        for answer in [
            overlapping,
            not_array,
            out_of_range,
            reversed,
            bad_port,
            zero_port,
            bad_host,
            long_host,
            short,
            too_many,
        ] {
            assert!(SlotMap::parse(&answer, &addr(1)).is_err(), "{answer:?}");
        }
    }

    #[test]
    fn at_most_a_thousand_masters_each_kept_once() {
        // One slot per master, every slot its own master: 16,384 connections if followed.
        let one_per_slot = |masters: i64| {
            Value::Array(
                (0..16_384)
                    .map(|slot| range(slot, slot, bulk("10.0.0.1"), 1 + slot % masters))
                    .collect(),
            )
        };
        let err = SlotMap::parse(&one_per_slot(16_384), &addr(1)).unwrap_err();
        assert!(err.0.contains("masters"), "{err}");
        let map = SlotMap::parse(&one_per_slot(MAX_MASTERS as i64), &addr(1)).unwrap();
        assert_eq!(map.masters().len(), MAX_MASTERS);
        assert_eq!(map.unowned(), 0);
        assert!(Arc::ptr_eq(
            map.master(0).unwrap(),
            map.master(MAX_MASTERS as u16).unwrap()
        ));
    }
}
