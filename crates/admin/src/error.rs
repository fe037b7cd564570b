//! Why a publish was refused or only partly carried out.

use ringcast_broker::BrokerError;

/// Why a publish was refused, or reached this node's subscribers only.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    /// The payload is larger than `--max-message-bytes` (HTTP 413).
    #[error("message too large")]
    TooLarge,
    /// The channel name is not valid (HTTP 400).
    #[error("invalid channel name")]
    BadChannel,
    /// The owner shard's inbox is full: the node is behind (HTTP 503 `overloaded`).
    #[error("overloaded")]
    Overloaded,
    /// The broker could not take the publish (HTTP 503).
    #[error("unavailable: {0}")]
    Unavailable(BrokerError),
    /// The message reached this node's subscribers, but the broker (Redis) could not
    /// carry it to the other nodes (HTTP 503, with `"local_delivery": true`).
    #[error("delivered locally only: {0}")]
    LocalOnly(String),
}

impl From<BrokerError> for PublishError {
    fn from(err: BrokerError) -> Self {
        match err {
            BrokerError::RemoteUnavailable(reason) => PublishError::LocalOnly(reason),
            BrokerError::Overloaded => PublishError::Overloaded,
            other => PublishError::Unavailable(other),
        }
    }
}
