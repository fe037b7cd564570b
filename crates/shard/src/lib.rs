//! ringcast-shard: the deterministic core of one shard.
//!
//! A [`Shard`] owns its connections ([`ConnTable`]), its local channel subscriptions
//! ([`LocalChannels`]), the channels it owns for the node ([`ChannelOwner`]), its timers
//! ([`TimerWheel`]) and its counters. It takes events (bytes received, sends completed,
//! clock ticks, messages from other shards) and produces actions (bytes to send, sockets
//! to shut down or close, messages for other shards). It never touches a socket or a
//! clock, so every behaviour is tested with byte strings and a fake clock; the reactor
//! glue in `bin/ringcast` turns actions into io_uring submissions.

mod admission;
mod auth;
mod channel_owner;
mod compression;
mod config;
mod conn;
mod conn_channels;
mod conn_table;
mod connect_limiter;
mod local_channels;
mod messages;
mod poll_ring;
mod routing;
mod shard;
mod shard_set;
mod tick;
mod timer_wheel;
mod write_queue;

pub use admission::{Refusal, Target};
pub use auth::{
    AuthError, AuthPolicy, Claims, Credentials, OriginPatternError, TOKEN_PROTOCOL_PREFIX,
    TokenError, check_origin_pattern, mint_token, verify,
};
pub use channel_owner::ChannelOwner;
pub use compression::{Compression, FANOUT_WINDOW_BITS};
pub use config::{ShardConfig, SlowConsumer};
pub use conn::{Conn, Phase, Transport};
pub use conn_channels::ConnChannels;
pub use conn_table::{ConnId, ConnTable};
pub use connect_limiter::ConnectLimiter;
pub use local_channels::{LocalChannels, Membership};
pub use messages::{BrokerCmd, ChannelName, ShardMsg};
pub use poll_ring::{Kept, PollRing};
pub use routing::owner_of;
pub use shard::{Action, RecvEnd, Shard};
pub use shard_set::ShardSet;
pub use tick::{TickClock, rfc3339_millis};
pub use timer_wheel::{TimerKind, TimerWheel};
pub use write_queue::{MAX_IOVECS, WriteQueue};
