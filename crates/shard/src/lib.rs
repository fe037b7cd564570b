//! ringcast-shard: the deterministic core of one shard.
//!
//! A [`Shard`] owns its connections (`ConnTable`), its local channel subscriptions
//! (`LocalChannels`), the channels it owns for the node (`ChannelOwner`), its timers
//! (`TimerWheel`) and its counters. It takes events (bytes received, sends completed,
//! clock ticks, messages from other shards) and produces actions (bytes to send, sockets
//! to shut down or close, messages for other shards). It never touches a socket or a
//! clock, so every behaviour is tested with byte strings and a fake clock; the reactor
//! glue in `bin/ringcast` turns actions into io_uring submissions, following the calling
//! contract on [`Shard`].
//!
//! Only what the binary and the tests use is public: the shard, its configuration,
//! events and actions, the cross-thread messages and identifiers, and token minting.

#![warn(unreachable_pub)]

mod admission;
mod auth;
mod channel_histories;
mod channel_owner;
mod channel_patterns;
mod close_reason;
mod compression;
mod config;
mod conn;
mod conn_channels;
mod conn_decoder;
mod conn_slots;
mod conn_table;
mod connect_limiter;
mod handshake_budget;
mod handshake_failure;
mod history;
mod ids;
mod jwt;
mod local_channels;
mod messages;
mod occupancy;
mod occupancy_snapshot;
mod outbox;
mod position;
mod request_head;
mod routing;
mod shard;
mod shard_set;
mod spare_slots;
mod tick;
mod timer_wheel;
mod tls_session;
mod token_grant;
mod write_queue;

pub use auth::{
    AuthPolicy, Credentials, OriginPatternError, TokenError, check_origin_pattern, mint_token,
};
pub use channel_histories::HistoryConfig;
pub use channel_patterns::ChannelPatterns;
pub use config::{ShardConfig, SlowConsumer};
pub use history::{Kept, Recovered};
pub use ids::{ChannelName, ConnId, GEN_BITS, GEN_MASK};
pub use jwt::{
    DEFAULT_CHANNELS_CLAIM, JwksError, JwksKeys, JwtConfigError, JwtRules, JwtSettings, KeySet,
    MAX_JWKS_KEYS, MAX_SUB_BYTES, MIN_JWT_SECRET_BYTES,
};
pub use messages::{
    BrokerCmd, DisconnectReport, DisconnectTarget, FetchedHistory, PositionReport, ShardMsg,
};
pub use occupancy_snapshot::{CountChange, OccupancySnapshot};
pub use position::{EPOCH_LEN, Epoch, Position, Since};
pub use routing::owner_of;
pub use shard::{Action, RecvEnd, Shard};
pub use spare_slots::{SpareSlots, connection_shares};
pub use token_grant::{Grant, GrantedChannels};
pub use write_queue::MAX_IOVECS;
