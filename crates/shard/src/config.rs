//! The settings one shard runs with (already split per shard by the binary).

use crate::auth::AuthPolicy;
use crate::channel_histories::HistoryConfig;
use crate::occupancy_snapshot::OccupancySnapshot;
use crate::spare_slots::SpareSlots;
use std::sync::Arc;

/// What happens to a connection whose queue would pass `max_queue_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumer {
    /// Close it with 1008 (policy violation) and count it.
    Close,
    /// Drop its oldest waiting messages (never control frames) and count them.
    DropOldest,
}

/// Per-shard settings; durations in milliseconds of the shard's clock.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// This shard's id, `0..shards`.
    pub id: u16,
    /// How many shards the node runs.
    pub shards: u16,
    /// Ping each connection this often.
    pub ping_interval_ms: u64,
    /// Close a connection whose pong has not arrived this long after a ping.
    pub pong_timeout_ms: u64,
    /// Close a connection that has not finished its handshake this long after accept.
    pub handshake_timeout_ms: u64,
    /// How long a closing connection may wait for the peer's FIN after ours.
    pub linger_ms: u64,
    /// Largest message a client may send (whole reassembled message).
    pub max_message_bytes: usize,
    /// This shard's own share of `--max-connections`, counted from accept (every socket
    /// in any phase); past it the shard borrows from `spare_connections`, and when that
    /// is empty too a new socket gets 503 at once, unread.
    pub max_connections: usize,
    /// The node-wide pool of connection slots beyond the shards' shares.
    pub spare_connections: SpareSlots,
    /// This shard's share of `--max-handshakes-per-sec` (burst: one second's worth);
    /// a socket accepted over it gets 503 with a jittered `Retry-After`, unread. 0 = off.
    pub handshakes_per_sec: u32,
    /// Bytes a connection may have queued (sent to the kernel or not) before the
    /// slow-consumer policy applies.
    pub max_queue_bytes: u32,
    /// The slow-consumer policy.
    pub slow_consumer: SlowConsumer,
    /// New connections per second per source address (this shard's share; 0 = off).
    pub connect_rate_per_ip: u32,
    /// Most channels one connection may subscribe to.
    pub max_channels_per_conn: usize,
    /// Accept `{"subscribe":"x"}` / `{"unsubscribe":"x"}` text messages from clients.
    pub client_commands: bool,
    /// Channel to which every shard publishes the time once a second, if any.
    pub tick_channel: Option<String>,
    /// Negotiate permessage-deflate with clients that offer it.
    pub compression: bool,
    /// Messages smaller than this go uncompressed even to deflate clients.
    pub compression_min_bytes: usize,
    /// How long a long-poll request is held before answering 204.
    pub poll_timeout_ms: u64,
    /// Messages kept per long-poll channel by its owner (when the channel keeps no
    /// history of its own).
    pub poll_ring: usize,
    /// Channel history: positions and kept messages for resuming clients.
    pub history: HistoryConfig,
    /// Every publish reaches the channel's owner, subscribed or not (the in-process
    /// broker). False with Redis, where a node hears a channel only while it is
    /// subscribed: a history is then forgotten when the node unsubscribes, since it
    /// could no longer be known complete.
    pub sees_every_publish: bool,
    /// Most bytes of queue one long-poll answer may take (capped further by
    /// `max_queue_bytes`); the messages past it are left for the next poll.
    pub poll_max_bytes: u32,
    /// Channels per second per source address that this shard's polls and event
    /// streams may ask for without a local subscriber already there (0 = off).
    pub channel_create_rate_per_ip: u32,
    /// TLS for every connection of the shard (`--tls-cert`/`--tls-key`); None: plain.
    /// The configuration's certificate resolver may change certificates at any time
    /// (reload); each new connection handshakes with what it resolves then.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Origin allow-list and token rules for handshakes.
    pub auth: AuthPolicy,
    /// Unix time in milliseconds when the shard clock read 0 (token expiry needs it).
    pub unix_ms_at_zero: u64,
    /// Timer wheel resolution.
    pub tick_ms: u64,
    /// Where this shard, as owner, writes its channels' node-wide subscriber counts
    /// (one per shard; the sidecar keeps clones to read them).
    pub occupancy: OccupancySnapshot,
}

impl ShardConfig {
    /// Unix seconds at shard clock `now_ms` (what token times are compared with).
    pub(crate) fn unix_secs(&self, now_ms: u64) -> u64 {
        (self.unix_ms_at_zero + now_ms) / 1000
    }

    /// A single-shard config with the CLI defaults, for tests.
    pub fn single() -> Self {
        ShardConfig {
            id: 0,
            shards: 1,
            ping_interval_ms: 30_000,
            pong_timeout_ms: 10_000,
            handshake_timeout_ms: 10_000,
            linger_ms: 2_000,
            max_message_bytes: 65_536,
            tls: None,
            max_connections: usize::MAX,
            spare_connections: SpareSlots::default(),
            handshakes_per_sec: 0,
            max_queue_bytes: 1 << 20,
            slow_consumer: SlowConsumer::Close,
            connect_rate_per_ip: 0,
            max_channels_per_conn: 16,
            client_commands: false,
            tick_channel: None,
            compression: false,
            compression_min_bytes: 256,
            poll_timeout_ms: 30_000,
            poll_ring: 64,
            history: HistoryConfig::default(),
            sees_every_publish: true,
            poll_max_bytes: 1 << 20,
            channel_create_rate_per_ip: 20,
            auth: AuthPolicy::default(),
            unix_ms_at_zero: 0,
            tick_ms: 50,
            occupancy: OccupancySnapshot::default(),
        }
    }
}
