//! The Redis broker: many gateway nodes behind one Redis act as one cluster.
//!
//! A publish on any node is `PUBLISH <prefix><channel> <envelope>` (`SPUBLISH` in sharded
//! mode; the envelope is described in [`envelope`]), and only that: the publishing
//! node receives its own message back through its subscription like every other node, so
//! each node delivers it exactly once. Messages received from Redis go to the node's
//! [`DeliverySink`] (the owner shards), never back to Redis.
//!
//! Modes ([`RedisMode`]):
//! - `interest`: `SUBSCRIBE` only the channels with local subscribers, batched (changes
//!   collected for a few milliseconds, up to 1,000 channels per command). Redis sends a
//!   node only what it has subscribers for.
//! - `pattern`: one `PSUBSCRIBE <prefix>*`. No subscription traffic, but every node
//!   receives every message and drops what it has no subscribers for, and Redis matches
//!   the pattern for every publish.
//! - `sharded`: `SSUBSCRIBE`/`SPUBLISH` (Redis 7 sharded pub/sub), one channel per command
//!   so no command spans two hash slots. Without [`RedisConfig::cluster`] the node talks to
//!   the one endpoint it was given (a standalone Redis 7); with it, to every master of a
//!   Redis Cluster, each channel at its slot's master, following the slot map, redirections,
//!   migrations and failovers (`cluster`).
//!
//! Every node also listens to the cluster's control channel, `<prefix>#control`
//! (`control`), where the node that took an admin disconnect asks the others to close
//! the same connections.
//!
//! With history (`RedisConfig::history`), a publish to a channel that keeps it is one
//! script that appends it to the channel's history in Redis and publishes it with its
//! position (`history`); a node's recovery reads that history when its own cache of
//! what it received cannot answer.
//!
//! It runs on the sidecar's tokio runtime over one RESP3 connection (Redis 6 or later),
//! which carries both the publishes and the subscription's pushes: plain (`redis://`) or
//! TLS (`rediss://`, rustls with the ring provider, the Mozilla roots plus
//! [`RedisConfig::tls_ca`]), logged in with the URL's ACL user and password; or to the
//! master Redis Sentinel names (`redis+sentinel://`, `sentinel`), asked again on every
//! reconnect and checked every 2 s while connected, so a failover is followed. A failed
//! attempt (TCP, TLS, credentials) is counted by its step and retried with the backoff
//! below. When the connection is lost the broker reports down, reconnects with capped, jittered backoff (`backoff`),
//! resubscribes every channel with local interest, and reports up again. While it is down
//! a publish is delivered to this node's subscribers and answered with
//! [`BrokerError::RemoteUnavailable`]. A publish Redis took but did not confirm in time is
//! answered [`BrokerError::Unavailable`] and not delivered locally (Redis may still
//! deliver it, and twice would break exactly-once).
//!
//! Its parts, one subject a file: [`RedisConfig`] and [`RedisMode`] (`config`), the
//! Redis Cluster router and its task (`cluster`), handing pushes to the node
//! (`deliver`), the
//! [`RedisBroker`] handle that publishes (`handle`), the state the handle and the
//! connection task share (`shared`), the connection task (`session`), opening the
//! connection, plain or TLS (`connect`), finding the master through Sentinel (`sentinel`), the control channel's requests (`control`), the size filter
//! on incoming bytes (`resp_limit`), the bounded push backlog (`push_gate`), the node's
//! channel interest (`interest`) and the changes to it on their way to the task
//! (`interest_queue`), the checks on what Redis sends (`inbound`), reconnect delays
//! (`backoff`), the wire format ([`envelope`]), what the broker reports
//! ([`BrokerEvents`]) and the wall clock it stamps messages with (`clock`); the
//! cluster's channel occupancy counts ([`ClusterOccupancy`], `occupancy`).
//!
//! [`DeliverySink`]: crate::DeliverySink
//! [`BrokerError::RemoteUnavailable`]: crate::BrokerError::RemoteUnavailable
//! [`BrokerError::Unavailable`]: crate::BrokerError::Unavailable

mod backoff;
mod clock;
mod cluster;
mod config;
mod connect;
mod control;
mod deliver;
pub mod envelope;
mod events;
mod handle;
mod history;
mod inbound;
mod interest;
mod interest_queue;
mod occupancy;
mod push_gate;
mod resp_limit;
mod sentinel;
mod session;
mod shared;

pub use config::{RedisConfig, RedisMode};
pub use events::{BrokerEvents, RejectReason};
pub use handle::{RedisBroker, RedisStartError};
pub use history::{Fetched, RedisHistory};
pub use occupancy::{
    CHANNELS_PER_WRITE, ClusterOccupancy, FlushOutcome, OccupancyError, Transition,
};
