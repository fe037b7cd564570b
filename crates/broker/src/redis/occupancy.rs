//! Cluster-wide channel occupancy through Redis: each node writes its changed
//! per-channel subscriber counts about once a second, and one Lua script keeps the
//! cluster's sums, reaps nodes that stopped writing, and says which channels went
//! 0→occupied or →0 cluster-wide with that very write, so exactly one node (the one
//! whose write or reap crossed zero) reports each transition.
//!
//! Keys, all under ONE hash tag so the script may touch them together even on Redis
//! Cluster (they share a slot):
//! - `{<prefix>occupancy}:nodes`: ZSET node id → Redis time (ms) of its last write, the
//!   heartbeat;
//! - `{<prefix>occupancy}:node:<id>`: HASH channel → that node's count (non-zero only);
//! - `{<prefix>occupancy}:sum`: HASH channel → the cluster's count (non-zero only);
//! - `{<prefix>occupancy}:clock`: HASH `last` → Redis time of the last write by any node,
//!   `since` → when the current run of writes began (after Redis took none for longer
//!   than [`DEAD_AFTER_MS`]).
//!
//! The script ([`FLUSH_SCRIPT`]) takes the node's new absolute counts of the channels
//! that changed, sets them in the node's hash and adds the difference to the sums. A
//! node whose heartbeat is older than [`DEAD_AFTER_MS`] is reaped by whichever node
//! writes next: its counts are subtracted and its hash deleted, at most
//! [`REAP_BUDGET`] channels per write (a hash left unfinished keeps its TTL until the
//! next write goes on). Staleness is relative to the cluster's activity: nobody is
//! reaped until writes have gone on for [`DEAD_AFTER_MS`] since Redis last took none
//! for that long, so an outage of Redis (or of every node) makes every heartbeat old
//! without making anyone dead. A node that finds its own heartbeat old is told to send
//! every count again ([`FlushOutcome::resync`]); what is left in its hash is what
//! nobody subtracted, so the absolute counts repair it (nothing is dropped, so a write
//! stays bounded however many channels the node has). Times come from Redis (`TIME`),
//! so node clocks need not agree. Every key's TTL ([`KEY_TTL_MS`]) is refreshed by
//! each write: a cluster with no node left forgets it all.
//!
//! Counts another node wrote that are not non-negative integers are treated as 0 and
//! counted ([`FlushOutcome::garbage`]), and so are channel names in the answer that
//! are not UTF-8; a cluster sum that is garbage reads as an error, never a number.
//!
//! Every Redis access of this module goes through one function, [`query`], routed by
//! key (`Shared::query_routed`: on Redis Cluster to the master owning the slot); the
//! keys a call names share the hash tag, so routing it by its first key is enough. The
//! script also reads the hashes of dead nodes, which it is not passed as keys: they
//! carry the same hash tag, so they are in the slot of the keys it is passed.

use super::cluster::Request;
use super::shared::Shared;
use crate::BrokerError;
use redis::Value;
use std::sync::Arc;

/// A node that has not written for this long is reaped by the others.
pub(crate) const DEAD_AFTER_MS: u64 = 5_000;
/// Every occupancy key expires this long after the last write of any node.
pub(crate) const KEY_TTL_MS: u64 = 600_000;
/// Most channels of dead nodes one write subtracts.
pub(crate) const REAP_BUDGET: u64 = 2_000;
/// Most channels one write carries (a node with more changes writes several times).
pub const CHANNELS_PER_WRITE: usize = 1_000;

/// The write: KEYS nodes, sum, this node's hash, clock; ARGV node id, dead-after ms, TTL ms,
/// reap budget, node-hash key prefix, then channel, count pairs. Answers
/// `{known, garbage, reaped, channel, 1|0, ...}`: `known` 0 when this node was not (or
/// no longer) a live member before this write.
pub(crate) const FLUSH_SCRIPT: &str = r#"
local nodes, sum, mine, clock = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local me, dead_after, ttl, budget, node_prefix = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {0, 0, 0}
local function count(raw)
  local n = tonumber(raw)
  if n == nil or n < 0 or n ~= math.floor(n) then
    out[2] = out[2] + 1
    return 0
  end
  return n
end
local function add(ch, delta)
  local raw = redis.call('HGET', sum, ch)
  local before = 0
  if raw then before = count(raw) end
  local after = before + delta
  if after < 0 then after = 0 end
  if after == 0 then redis.call('HDEL', sum, ch) else redis.call('HSET', sum, ch, after) end
  if before == 0 and after > 0 then
    table.insert(out, ch); table.insert(out, 1)
  elseif before > 0 and after == 0 then
    table.insert(out, ch); table.insert(out, 0)
  end
end
local function drop_hash(key, limit)
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', key, cursor, 'COUNT', 100)
    cursor = page[1]
    local fields = page[2]
    for i = 1, #fields, 2 do
      add(fields[i], -count(fields[i + 1]))
      redis.call('HDEL', key, fields[i])
      out[3] = out[3] + 1
      limit = limit - 1
    end
  until cursor == '0' or limit <= 0
  return redis.call('HLEN', key) == 0
end
local last = tonumber(redis.call('HGET', clock, 'last'))
local since = tonumber(redis.call('HGET', clock, 'since'))
if last == nil or since == nil or now - last > dead_after then since = now end
redis.call('HSET', clock, 'last', now, 'since', since)
local seen = redis.call('ZSCORE', nodes, me)
if seen and now - tonumber(seen) <= dead_after then out[1] = 1 end
redis.call('ZADD', nodes, now, me)
for i = 6, #ARGV, 2 do
  local ch, new = ARGV[i], tonumber(ARGV[i + 1])
  local raw = redis.call('HGET', mine, ch)
  local old = 0
  if raw then old = count(raw) end
  if new ~= old then
    if new == 0 then redis.call('HDEL', mine, ch) else redis.call('HSET', mine, ch, new) end
    add(ch, new - old)
  end
end
local dead = {}
if now - since > dead_after then
  dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', now - dead_after - 1, 'LIMIT', 0, 8)
end
for _, node in ipairs(dead) do
  if budget <= 0 then break end
  local key = node_prefix .. node
  local before = out[3]
  if drop_hash(key, budget) then
    redis.call('DEL', key)
    redis.call('ZREM', nodes, node)
  else
    redis.call('PEXPIRE', key, ttl)
  end
  budget = budget - (out[3] - before)
end
redis.call('PEXPIRE', nodes, ttl)
redis.call('PEXPIRE', sum, ttl)
redis.call('PEXPIRE', mine, ttl)
redis.call('PEXPIRE', clock, ttl)
return out
"#;

/// A channel's cluster-wide count crossed zero with a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// 0 → at least one subscriber somewhere in the cluster.
    Occupied(String),
    /// The last subscriber in the cluster is gone.
    Vacated(String),
}

/// What one write found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Cluster transitions this write caused (this node reports them, no other does).
    pub transitions: Vec<Transition>,
    /// This node was not a live member before the write (first write, or it was
    /// reaped): every count must be sent again.
    pub resync: bool,
    /// Counts found that were not non-negative integers (treated as 0), and channel
    /// names in the answer that were not UTF-8 (skipped).
    pub garbage: u64,
    /// Channels of dead nodes subtracted.
    pub reaped: u64,
}

/// Why occupancy could not be read or written.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum OccupancyError {
    /// Redis is away or refused the command.
    #[error("Redis: {0}")]
    Redis(String),
    /// Redis answered something that is no occupancy data.
    #[error("unexpected answer from Redis: {0}")]
    Reply(String),
}

impl From<OccupancyError> for BrokerError {
    fn from(err: OccupancyError) -> Self {
        BrokerError::Unavailable(err.to_string())
    }
}

/// One Redis call of this module.
enum Call {
    /// The write script, with its keys and arguments.
    Flush {
        keys: [Vec<u8>; 4],
        args: Vec<Vec<u8>>,
    },
    /// A plain command.
    Cmd(redis::Cmd),
}

/// Runs `call` where `key` lives: on Redis Cluster the master of `key`'s slot
/// (following one redirection), else the one connection (`Shared::query_routed`).
/// Every key a call names shares `key`'s hash tag. The one place this module reaches
/// Redis.
async fn query(shared: &Shared, key: &[u8], call: Call) -> Result<Value, OccupancyError> {
    let result = match &call {
        Call::Flush { keys, args } => {
            let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let script = Request::Script {
                code: FLUSH_SCRIPT,
                keys: &keys,
                args: &args,
            };
            shared.query_routed::<Value>(key, &script).await
        }
        Call::Cmd(cmd) => shared.query_routed::<Value>(key, &Request::Cmd(cmd)).await,
    };
    result.map_err(|err| OccupancyError::Redis(err.to_string()))
}

/// The node's view of cluster occupancy in Redis.
#[derive(Clone)]
pub struct ClusterOccupancy {
    shared: Arc<Shared>,
}

impl ClusterOccupancy {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ClusterOccupancy { shared }
    }

    /// `{<prefix>occupancy}`: the hash tag of every key.
    fn tag(&self) -> String {
        format!("{{{}occupancy}}", self.shared.prefix)
    }

    /// Writes this node's new counts of `counts`' channels (at most
    /// [`CHANNELS_PER_WRITE`]; an empty list is a heartbeat), reaps dead nodes, and
    /// answers the transitions this write caused.
    pub async fn flush(&self, counts: &[(&str, u64)]) -> Result<FlushOutcome, OccupancyError> {
        let tag = self.tag();
        let nodes = format!("{tag}:nodes");
        let node_prefix = format!("{tag}:node:");
        let me = self.shared.node.to_string();
        let keys = [
            nodes.clone().into_bytes(),
            format!("{tag}:sum").into_bytes(),
            format!("{node_prefix}{me}").into_bytes(),
            format!("{tag}:clock").into_bytes(),
        ];
        let mut args: Vec<Vec<u8>> = vec![
            me.into_bytes(),
            DEAD_AFTER_MS.to_string().into_bytes(),
            KEY_TTL_MS.to_string().into_bytes(),
            REAP_BUDGET.to_string().into_bytes(),
            node_prefix.into_bytes(),
        ];
        for (channel, count) in counts.iter().take(CHANNELS_PER_WRITE) {
            args.push(channel.as_bytes().to_vec());
            args.push(count.to_string().into_bytes());
        }
        let reply = query(&self.shared, nodes.as_bytes(), Call::Flush { keys, args }).await?;
        parse_flush(&reply)
    }

    /// `channel`'s subscribers on every node, as of the nodes' last writes.
    pub async fn count(&self, channel: &str) -> Result<u64, OccupancyError> {
        let sum = format!("{}:sum", self.tag());
        let mut cmd = redis::cmd("HGET");
        cmd.arg(&sum).arg(channel);
        let reply = query(&self.shared, sum.as_bytes(), Call::Cmd(cmd)).await?;
        parse_count(&reply)
    }

    /// `channel`'s last position in the history Redis keeps (`epoch:offset`), None
    /// when it has none.
    pub async fn position(&self, channel: &str) -> Result<Option<String>, OccupancyError> {
        let meta = format!("{{{}{channel}}}:meta", self.shared.prefix);
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&meta).arg("epoch").arg("offset");
        let reply = query(&self.shared, meta.as_bytes(), Call::Cmd(cmd)).await?;
        parse_position(&reply)
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// Reads the script's answer.
fn parse_flush(reply: &Value) -> Result<FlushOutcome, OccupancyError> {
    let bad = || OccupancyError::Reply(format!("{reply:?}"));
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    let [known, garbage, reaped, rest @ ..] = items.as_slice() else {
        return Err(bad());
    };
    let number = |v: &Value| int(v).and_then(|n| u64::try_from(n).ok()).ok_or_else(bad);
    let mut outcome = FlushOutcome {
        resync: number(known)? == 0,
        garbage: number(garbage)?,
        reaped: number(reaped)?,
        transitions: Vec::new(),
    };
    for pair in rest.chunks(2) {
        let [channel, edge] = pair else {
            return Err(bad());
        };
        let edge = number(edge)?;
        let channel = match channel {
            Value::BulkString(bytes) => match String::from_utf8(bytes.clone()) {
                Ok(channel) => channel,
                // A name another "node" wrote: no channel of ours, not worth the write.
                Err(_) => {
                    outcome.garbage += 1;
                    continue;
                }
            },
            other => text(other).ok_or_else(bad)?,
        };
        outcome.transitions.push(match edge {
            1 => Transition::Occupied(channel),
            _ => Transition::Vacated(channel),
        });
    }
    Ok(outcome)
}

/// A cluster sum: absent is 0; anything but a non-negative integer is an error.
fn parse_count(reply: &Value) -> Result<u64, OccupancyError> {
    match reply {
        Value::Nil => Ok(0),
        other => text(other)
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| OccupancyError::Reply(format!("the cluster count is {other:?}"))),
    }
}

/// `[epoch, offset]` of a history's meta hash.
fn parse_position(reply: &Value) -> Result<Option<String>, OccupancyError> {
    let bad = || OccupancyError::Reply(format!("the history position is {reply:?}"));
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    match items.as_slice() {
        [Value::Nil, _] | [_, Value::Nil] => Ok(None),
        [epoch, offset] => {
            let epoch = text(epoch).ok_or_else(bad)?;
            let offset = int(offset)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(bad)?;
            Ok(Some(format!("{epoch}:{offset}")))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn the_scripts_answer_becomes_transitions() {
        let reply = Value::Array(vec![
            Value::Int(1),
            Value::Int(2),
            Value::Int(0),
            bulk("news"),
            Value::Int(1),
            bulk("sport"),
            Value::Int(0),
        ]);
        assert_eq!(
            parse_flush(&reply),
            Ok(FlushOutcome {
                transitions: vec![
                    Transition::Occupied("news".into()),
                    Transition::Vacated("sport".into())
                ],
                resync: false,
                garbage: 2,
                reaped: 0,
            })
        );
        let not_utf8 = Value::Array(vec![
            Value::Int(1),
            Value::Int(0),
            Value::Int(0),
            Value::BulkString(vec![b'n', 0xff]),
            Value::Int(0),
            bulk("news"),
            Value::Int(0),
        ]);
        assert_eq!(
            parse_flush(&not_utf8),
            Ok(FlushOutcome {
                transitions: vec![Transition::Vacated("news".into())],
                resync: false,
                garbage: 1,
                reaped: 0,
            }),
            "a name that is not UTF-8 is skipped and counted, the others kept"
        );
        let first = Value::Array(vec![Value::Int(0), Value::Int(0), Value::Int(3)]);
        assert!(parse_flush(&first).is_ok_and(|o| o.resync && o.reaped == 3));
        for bad in [
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(1), Value::Int(0)]),
            Value::Array(vec![Value::Int(1), Value::Int(-1), Value::Int(0)]),
            Value::Array(vec![Value::Int(1), Value::Int(0), Value::Int(0), bulk("x")]),
            Value::Array(vec![
                Value::Int(1),
                Value::Int(0),
                Value::Int(0),
                Value::Nil,
                Value::Int(1),
            ]),
        ] {
            assert!(parse_flush(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_garbage_cluster_count_is_an_error_not_a_number() {
        assert_eq!(parse_count(&Value::Nil), Ok(0));
        assert_eq!(parse_count(&bulk("42")), Ok(42));
        for bad in [
            bulk("-3"),
            bulk("4.5"),
            bulk("lots"),
            bulk(""),
            Value::Array(vec![]),
        ] {
            assert!(parse_count(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn positions_read_from_the_meta_hash() {
        let pair = |e: Value, o: Value| Value::Array(vec![e, o]);
        assert_eq!(
            parse_position(&pair(bulk("AbCdEfGh"), bulk("12"))),
            Ok(Some("AbCdEfGh:12".into()))
        );
        assert_eq!(parse_position(&pair(Value::Nil, Value::Nil)), Ok(None));
        assert!(parse_position(&pair(bulk("e"), bulk("x"))).is_err());
        assert!(parse_position(&Value::Nil).is_err());
    }
}
