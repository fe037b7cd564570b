//! What the Redis broker reports about itself: [`BrokerEvents`], implemented by the
//! gateway on top of its metrics (so this crate knows no metric names), and the reasons
//! a message from Redis is refused.

/// Why a message from Redis was counted and skipped instead of delivered, or why a
/// connection was lost or could not be made.
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
    /// answer), or Redis failed the subscription of a new one; a reply cut off by it is
    /// lost.
    Disconnect,
    /// A connection attempt failed: no TCP connection (refused, unreachable, timed out)
    /// or a Redis handshake that failed for a reason other than credentials.
    Connect,
    /// A connection attempt failed in the TLS handshake (`rediss://`): a certificate not
    /// trusted or not for the host, or no TLS on the other end.
    Tls,
    /// Redis refused the credentials of a connection attempt (`WRONGPASS`, `NOAUTH`) or
    /// the user's right to subscribe (`NOPERM`).
    Auth,
    /// `redis+sentinel://`: no Sentinel named the master (all down, or none knows the
    /// master name), or the server a Sentinel named is not a master (`ROLE`).
    Sentinel,
    /// Redis Cluster: no node answered with a usable slot map (all seeds and known nodes
    /// down, or answers that are not one), or a node answered `CLUSTERDOWN` or `TRYAGAIN`.
    Cluster,
    /// Redis Cluster: a node redirected a command (`MOVED`, `ASK`) or unsubscribed a
    /// channel whose slot migrated away: the slot map was stale, and is asked again.
    Moved,
}

impl RejectReason {
    /// Every reason, for exporting each label at 0 from startup.
    pub const ALL: [RejectReason; 11] = [
        RejectReason::TooLarge,
        RejectReason::Channel,
        RejectReason::Envelope,
        RejectReason::Malformed,
        RejectReason::Disconnect,
        RejectReason::Connect,
        RejectReason::Tls,
        RejectReason::Auth,
        RejectReason::Sentinel,
        RejectReason::Cluster,
        RejectReason::Moved,
    ];

    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::Channel => "channel",
            RejectReason::Envelope => "envelope",
            RejectReason::Malformed => "malformed",
            RejectReason::Disconnect => "disconnect",
            RejectReason::Connect => "connect",
            RejectReason::Tls => "tls",
            RejectReason::Auth => "auth",
            RejectReason::Sentinel => "sentinel",
            RejectReason::Cluster => "cluster",
            RejectReason::Moved => "moved",
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
    /// A message from Redis was refused, a connection lost, or a connection attempt
    /// failed, for `reason`.
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
