//! The Redis broker's settings: where Redis is, how the node subscribes there, and the
//! batching, PING and timeout figures of the connection.

use super::history::RedisHistory;
use std::path::PathBuf;
use std::time::Duration;

/// How the node subscribes at Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// `SUBSCRIBE` the channels with local subscribers (default).
    Interest,
    /// One `PSUBSCRIBE <prefix>*`: every node receives every message.
    Pattern,
    /// `SSUBSCRIBE`/`SPUBLISH` for Redis Cluster's sharded pub/sub.
    Sharded,
}

/// Settings of the Redis broker (its `Debug` hides the URL's password).
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, `rediss://...` for TLS, or
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]`.
    pub url: String,
    /// PEM CA certificate(s) trusted for a `rediss://` URL besides the bundled Mozilla
    /// roots (a private CA); refused with a `redis://` URL.
    pub tls_ca: Option<PathBuf>,
    /// Prefix of every Redis channel (`ringcast:`).
    pub prefix: String,
    /// Subscription mode.
    pub mode: RedisMode,
    /// Redis Cluster: `url` names seed nodes, the slot map is followed, and each
    /// channel goes to the master owning its slot (requires [`RedisMode::Sharded`]).
    pub cluster: bool,
    /// Largest payload delivered; larger messages from Redis are refused.
    pub max_message_bytes: usize,
    /// Whether a channel name (after the prefix) is valid.
    pub valid_channel: fn(&str) -> bool,
    /// How long subscription changes are collected before one batch is sent.
    pub batch_window: Duration,
    /// Most channels in one SUBSCRIBE or UNSUBSCRIBE.
    pub batch_size: usize,
    /// How often an idle connection is checked with PING.
    pub ping_every: Duration,
    /// How long a connect or a reply may take before the connection counts as lost.
    pub timeout: Duration,
    /// Channel history kept in Redis (None: publishes carry no position).
    pub history: Option<RedisHistory>,
}

impl RedisConfig {
    /// Settings with the default batching (5 ms, 1,000 channels), a PING every second, a
    /// 2 s timeout and no extra CA.
    pub fn new(
        url: &str,
        prefix: &str,
        mode: RedisMode,
        max_message_bytes: usize,
        valid_channel: fn(&str) -> bool,
    ) -> Self {
        RedisConfig {
            url: url.to_owned(),
            tls_ca: None,
            prefix: prefix.to_owned(),
            mode,
            cluster: false,
            max_message_bytes,
            valid_channel,
            batch_window: Duration::from_millis(5),
            batch_size: 1_000,
            ping_every: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            history: None,
        }
    }
}
