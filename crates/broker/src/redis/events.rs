//! What the Redis broker reports about itself: [`BrokerEvents`], implemented by the
//! gateway on top of its metrics (so this crate knows no metric names), and the reasons
//! a message from Redis is refused.

/// Why a message from Redis was counted and skipped instead of delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The payload is larger than the node's message limit.
    TooLarge,
    /// The channel, after the prefix, is not a valid channel name (or lacks the prefix).
    Channel,
    /// The payload starts like an envelope but is not a valid one.
    Envelope,
    /// The push does not have the shape of a pub/sub message.
    Malformed,
    /// The connection ended under the broker (reset, EOF, unparsable reply, no PING
    /// answer); a reply cut off by it is lost.
    Disconnect,
}

impl RejectReason {
    /// Every reason, for exporting each label at 0 from startup.
    pub const ALL: [RejectReason; 5] = [
        RejectReason::TooLarge,
        RejectReason::Channel,
        RejectReason::Envelope,
        RejectReason::Malformed,
        RejectReason::Disconnect,
    ];

    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::Channel => "channel",
            RejectReason::Envelope => "envelope",
            RejectReason::Malformed => "malformed",
            RejectReason::Disconnect => "disconnect",
        }
    }
}

/// Receives the Redis broker's state changes and counts. Called on the sidecar thread;
/// implementations must be cheap (they run once per received message).
pub trait BrokerEvents: Send + Sync + 'static {
    /// The connection came up (`true`: connected and subscribed) or went down.
    fn up(&self, up: bool);
    /// A connection was established again after one was lost.
    fn reconnected(&self);
    /// A pub/sub message arrived from Redis (before any checks).
    fn received(&self);
    /// A message from Redis, or a connection, was refused for `reason`.
    fn rejected(&self, reason: RejectReason);
    /// Subscriptions (channels, patterns or shard channels) now held at Redis.
    fn subscriptions(&self, count: usize);
    /// A publish to Redis failed (the message was delivered locally only).
    fn publish_failed(&self);
    /// Seconds from a node's publish to this node handing the message to its shards.
    fn latency(&self, seconds: f64);
    /// The socket stopped being read `times` times because the pushes waiting for the
    /// shards reached their bound.
    fn push_backlog_full(&self, times: usize);
}
