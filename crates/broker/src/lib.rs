//! ringcast-broker: where publishes come from and where the node's channel interest goes.
//!
//! A [`Broker`] takes publishes (from the admin API) and subscription changes (from the
//! channel owners) and hands received messages to a [`DeliverySink`], which routes them
//! to the owner shard. [`LocalBroker`] is the in-process default: a publish is delivered
//! straight to this node's sink. [`RedisBroker`] makes many nodes behind one Redis act as
//! one cluster (see [`redis`] for its modes and [`redis::envelope`] for its wire format).

#![warn(unreachable_pub)]

mod local;
mod redacted_url;
pub mod redis;

pub use local::LocalBroker;
pub use redacted_url::redact_url;
// `self::`: the module `redis` and the `redis` crate share a name here.
pub use self::redis::envelope::Position;
pub use self::redis::{
    BrokerEvents, Fetched, RedisBroker, RedisConfig, RedisHistory, RedisMode, RedisStartError,
    RejectReason,
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
}
