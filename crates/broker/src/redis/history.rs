//! Channel history in Redis, so positions are cluster-wide and a client may resume on
//! any node.
//!
//! A publish to a channel that keeps history is one Lua script (atomic at Redis): take
//! the channel's epoch (or start one with the publisher's random candidate), increment
//! its offset, append the version 2 envelope (which carries both, see [`envelope`]) to
//! the channel's list trimmed to `size`, refresh both keys' TTL, and `PUBLISH` (or
//! `SPUBLISH`) that same envelope. One round trip per publish; every node receives the
//! message with its position on its subscription. The keys are
//! `{<prefix><channel>}:meta` (a hash: `epoch`, `offset`) and `{<prefix><channel>}:log`
//! (a list of envelopes): the hash tag is the Redis channel itself, so in Redis Cluster
//! both keys live in the channel's hash slot, as sharded pub/sub requires of a script
//! that publishes (`SPUBLISH` inside a script must name a channel of the script's slot),
//! and the script and the reads go to the master owning the channel. A prefix with `{`
//! or `}` would break that and is refused in cluster mode.
//!
//! Nodes keep what they receive as a cache; a recovery the cache cannot answer reads the
//! list ([`fetch`]), through the connection task ([`HistoryRead`]) so that the read
//! follows the node's SUBSCRIBE to the channel on the same connection: what Redis
//! publishes after the read reaches the node, so the read and the subscription's
//! messages meet without a gap.
//!
//! [`envelope`]: super::envelope

use super::cluster::Request;
use super::envelope::{self, EPOCH_BYTES, Opened, VERSION_POSITIONED};
use super::shared::Shared;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::time::Duration;

/// Appends and publishes in one step; returns the new offset. KEYS: meta, log. ARGV:
/// Redis channel, candidate epoch, envelope header (13 bytes), payload, size, TTL in ms,
/// publish command.
const APPEND_AND_PUBLISH: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local sealed = ARGV[3] .. epoch .. string.format('%020d', offset) .. ARGV[4]
redis.call('RPUSH', KEYS[2], sealed)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call(ARGV[7], ARGV[1], sealed)
return offset
";

/// Which channels keep history in Redis, and how much.
#[derive(Clone)]
pub struct RedisHistory {
    /// Messages kept per channel.
    pub size: usize,
    /// Both keys expire this long after the channel's last publish (the epoch with them,
    /// so a history that expired starts again in a new epoch).
    pub ttl: Duration,
    /// Whether a channel keeps history.
    pub keeps: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory")
            .field("size", &self.size)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A channel's history as read from Redis: its epoch and the kept messages, oldest
/// first, each with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The history's epoch; None when Redis keeps no history for the channel.
    pub epoch: Option<[u8; EPOCH_BYTES]>,
    /// The kept messages (refused entries are skipped).
    pub messages: Vec<Opened>,
}

/// A read of one channel's history, asked of the connection task: it is sent after the
/// subscription changes waiting before it, on the same connection, so Redis subscribes
/// the node first and every message published after the read reaches the node.
pub(crate) struct HistoryRead {
    /// The Redis channel.
    pub(crate) redis_channel: String,
    /// Where the answer goes.
    pub(crate) reply: tokio::sync::oneshot::Sender<redis::RedisResult<Fetched>>,
}

/// The two keys of `redis_channel`'s history.
fn keys(redis_channel: &str) -> (String, String) {
    (
        format!("{{{redis_channel}}}:meta"),
        format!("{{{redis_channel}}}:log"),
    )
}

/// Appends `payload` to `redis_channel`'s history and publishes it with `command`
/// (`PUBLISH` or `SPUBLISH`), on the master owning the channel's slot in Redis Cluster
/// mode (the keys' hash tag is the channel); the new offset.
pub(crate) async fn append_and_publish(
    shared: &Shared,
    history: &RedisHistory,
    redis_channel: &str,
    command: &str,
    payload: &[u8],
    binary: bool,
    published_at_ns: u64,
) -> redis::RedisResult<u64> {
    let (meta, log) = keys(redis_channel);
    let header = envelope::header(VERSION_POSITIONED, binary, published_at_ns);
    let ttl_ms = (history.ttl.as_millis().max(1) as u64).to_string();
    let size = history.size.max(1).to_string();
    let request = Request::Script {
        code: APPEND_AND_PUBLISH,
        keys: &[meta.as_bytes(), log.as_bytes()],
        args: &[
            redis_channel.as_bytes(),
            &candidate_epoch(published_at_ns)[..],
            &header[..],
            payload,
            size.as_bytes(),
            ttl_ms.as_bytes(),
            command.as_bytes(),
        ],
    };
    shared.query_routed(meta.as_bytes(), &request).await
}

/// Reads `redis_channel`'s history: the epoch and the kept envelopes, in one `MULTI`
/// (so the two agree). Entries that are not valid positioned envelopes
/// of at most `max_payload` bytes are skipped.
pub(crate) async fn fetch(
    connection: &mut MultiplexedConnection,
    redis_channel: &str,
    max_payload: usize,
) -> redis::RedisResult<Fetched> {
    let (meta, log) = keys(redis_channel);
    let (epoch, entries): (Option<Vec<u8>>, Vec<Vec<u8>>) = redis::pipe()
        .atomic()
        .hget(&meta, "epoch")
        .lrange(&log, 0, -1)
        .query_async(connection)
        .await?;
    let epoch = epoch.and_then(|e| <[u8; EPOCH_BYTES]>::try_from(e.as_slice()).ok());
    let messages = entries
        .into_iter()
        .filter_map(|raw| envelope::open(Bytes::from(raw)).ok())
        .filter(|m| {
            m.payload.len() <= max_payload && m.position.is_some_and(|p| Some(p.epoch) == epoch)
        })
        .collect();
    Ok(Fetched { epoch, messages })
}

/// An epoch for a history this publish may start: 48 bits from the publish time and a
/// per-process random key, so two nodes starting the same channel's history at once
/// (only one wins, inside the script) or a history started again later never collide.
fn candidate_epoch(published_at_ns: u64) -> [u8; EPOCH_BYTES] {
    use std::hash::BuildHasher;
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let bits = KEYS
        .get_or_init(std::collections::hash_map::RandomState::new)
        .hash_one(published_at_ns);
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = [0u8; EPOCH_BYTES];
    for (i, c) in out.iter_mut().enumerate() {
        *c = ALPHABET[((bits >> (6 * i)) & 63) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_channels_hash_slot_and_epochs_are_url_safe() {
        assert_eq!(
            keys("ringcast:news"),
            ("{ringcast:news}:meta".into(), "{ringcast:news}:log".into())
        );
        let a = candidate_epoch(1);
        assert_ne!(a, candidate_epoch(2));
        assert!(
            a.iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        );
    }
}
