//! ringcast-broker: where publishes come from and where the node's channel interest goes.
//!
//! A [`Broker`] takes publishes (from the admin API) and subscription changes (from the
//! channel owners) and hands received messages to a [`DeliverySink`], which routes them
//! to the owner shard. [`LocalBroker`] is the in-process default: a publish is delivered
//! straight to this node's sink. [`RedisBroker`] makes many nodes behind one Redis act as
//! one cluster (see [`redis`] for its modes and [`redis::envelope`] for its wire format).
//!
//! Besides messages, a broker carries one control request between nodes: the admin API's
//! disconnect ([`Broker::disconnect_cluster`] on the node that took the request,
//! [`DeliverySink::disconnect`] on every other one). [`LocalBroker`] has no other node to
//! tell.

#![warn(unreachable_pub)]

mod local;
mod redacted_url;
pub mod redis;

pub use local::LocalBroker;
pub use redacted_url::redact_url;
// `self::`: the module `redis` and the `redis` crate share a name here.
pub use self::redis::envelope::Position;
pub use self::redis::{
    BrokerEvents, CHANNELS_PER_WRITE, ClusterOccupancy, Fetched, FlushOutcome, OccupancyError,
    RedisBroker, RedisConfig, RedisHistory, RedisMode, RedisStartError, RejectReason, Transition,
};

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;

/// The outcome of a publish, once the backend answered.
pub type PublishFuture = Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>>;

/// A channel's history as the backend keeps it.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Fetched, BrokerError>> + Send>>;

/// Why a publish could not be carried out.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// The broker cannot reach its backend; local delivery may still have happened.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The backend (Redis) could not take the publish, so other nodes did not get it; the
    /// message WAS delivered to this node's own subscribers.
    #[error("delivered on this node only: {0}")]
    RemoteUnavailable(String),
    /// The owner shard's inbox is full: the node is behind; nothing was delivered.
    #[error("overloaded")]
    Overloaded,
    /// The node's shards are gone (shutting down).
    #[error("node is shutting down")]
    Closed,
}

/// Most bytes of a `sub` a disconnect may name.
pub const MAX_SUB_BYTES: usize = 256;

/// Which connections a disconnect closes (on every node of the cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectTarget {
    /// The connections admitted with a token whose grant names this `sub`.
    Sub(String),
    /// The subscribers of this channel.
    Channel(String),
}

impl DisconnectTarget {
    /// Whether it names something a connection can have: a `sub` of 1 to
    /// [`MAX_SUB_BYTES`] bytes, or a channel `valid_channel` accepts.
    pub fn is_valid(&self, valid_channel: fn(&str) -> bool) -> bool {
        match self {
            DisconnectTarget::Sub(sub) => (1..=MAX_SUB_BYTES).contains(&sub.len()),
            DisconnectTarget::Channel(channel) => valid_channel(channel),
        }
    }
}

/// Receives messages the broker wants delivered on this node.
pub trait DeliverySink: Send + Sync + 'static {
    /// Routes one message for `channel` to its owner shard, or answers
    /// [`BrokerError::Overloaded`] at once when that shard's inbox is full (never blocks).
    /// `position`: where the backend put it in the channel's history, if it keeps one.
    fn deliver(
        &self,
        channel: &str,
        payload: Bytes,
        binary: bool,
        position: Option<Position>,
    ) -> Result<(), BrokerError>;
    /// Another node took a disconnect request for `target`: close the matching
    /// connections of this node too. Never blocks (the work is started, not awaited).
    fn disconnect(&self, target: DisconnectTarget);
}

/// The node's link to its publishers and to other nodes.
pub trait Broker: Send + Sync + 'static {
    /// Publishes `payload` to `channel` (for every node that has subscribers).
    fn publish(&self, channel: &str, payload: Bytes, binary: bool) -> Result<(), BrokerError>;
    /// Like [`Broker::publish`], resolving once the backend confirmed (or refused) the
    /// publish. The default answers at once with [`Broker::publish`]'s result.
    fn publish_async(&self, channel: &str, payload: Bytes, binary: bool) -> PublishFuture {
        Box::pin(std::future::ready(self.publish(channel, payload, binary)))
    }
    /// The node gained its first subscriber of `channel`.
    fn subscribe(&self, channel: &str);
    /// The node lost its last subscriber of `channel`.
    fn unsubscribe(&self, channel: &str);
    /// Reads `channel`'s history from the backend, for a recovery the owner's cache
    /// cannot answer. The default (no shared history) answers `Unavailable`.
    fn fetch_history(&self, _channel: &str) -> FetchFuture {
        Box::pin(std::future::ready(Err(BrokerError::Unavailable(
            "this broker keeps no history".into(),
        ))))
    }
    /// Asks every other node to close the connections `target` names (this node's are
    /// closed by the caller), resolving once the backend took the request; no count
    /// comes back. The default (a single node) has no other node to ask.
    fn disconnect_cluster(&self, _target: &DisconnectTarget) -> PublishFuture {
        Box::pin(std::future::ready(Ok(())))
    }
}
