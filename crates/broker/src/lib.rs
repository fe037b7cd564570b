//! ringcast-broker: where publishes come from and where the node's channel interest goes.
//!
//! A [`Broker`] takes publishes (from the admin API) and subscription changes (from the
//! channel owners) and hands received messages to a [`DeliverySink`], which routes them
//! to the owner shard. [`LocalBroker`] is the in-process default: a publish is delivered
//! straight to this node's sink. The Redis broker (many nodes as one cluster) plugs in
//! behind the same trait.

mod local;

pub use local::LocalBroker;

use bytes::Bytes;

/// Why a publish could not be carried out.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// The broker cannot reach its backend; local delivery may still have happened.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The node's shards are gone (shutting down).
    #[error("node is shutting down")]
    Closed,
}

/// Receives messages the broker wants delivered on this node.
pub trait DeliverySink: Send + Sync + 'static {
    /// Routes one message for `channel` to its owner shard.
    fn deliver(&self, channel: &str, payload: Bytes, binary: bool) -> Result<(), BrokerError>;
}

/// The node's link to its publishers and to other nodes.
pub trait Broker: Send + Sync + 'static {
    /// Publishes `payload` to `channel` (for every node that has subscribers).
    fn publish(&self, channel: &str, payload: Bytes, binary: bool) -> Result<(), BrokerError>;
    /// The node gained its first subscriber of `channel`.
    fn subscribe(&self, channel: &str);
    /// The node lost its last subscriber of `channel`.
    fn unsubscribe(&self, channel: &str);
}
