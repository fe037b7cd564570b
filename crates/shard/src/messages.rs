//! Messages that cross threads: between shards (through flume) and from shards to the
//! sidecar's broker.

use crate::ids::{ChannelName, ConnId};
use crate::poll_ring::Kept;
use bytes::Bytes;

/// What one shard (or the sidecar) tells another shard.
#[derive(Debug, Clone)]
pub enum ShardMsg {
    /// To the channel's owner: `shard` gained its first (`on`) or lost its last
    /// (`!on`) local subscriber of `channel`.
    Interest {
        channel: ChannelName,
        shard: u16,
        on: bool,
    },
    /// To the channel's owner: a message published to `channel` (from the broker).
    Publish {
        channel: ChannelName,
        payload: Bytes,
        binary: bool,
    },
    /// From the owner to a shard with subscribers: the WebSocket frame encoded once and
    /// shared by all, plus the raw message and its channel sequence number for the
    /// SSE and long-poll transports.
    Deliver {
        channel: ChannelName,
        frame: Bytes,
        /// The same message as one compressed frame (window 15), when compression is on
        /// and the message is large enough; shared by every deflate subscriber.
        deflated: Option<Bytes>,
        payload: Bytes,
        binary: bool,
        seq: u64,
        /// Its long-poll JSON element, when the owner keeps a ring for the channel:
        /// the ring's own buffer, shared by every poll answer.
        kept: Option<Kept>,
    },
    /// To the owner: long-poll connection `conn` on `shard` wants the messages of
    /// `channel` after `since` (None: only new ones).
    PollRequest {
        channel: ChannelName,
        since: Option<u64>,
        shard: u16,
        conn: ConnId,
    },
    /// From the owner: the kept messages after the poll's `since` (their encodings are
    /// the ring's, shared, never re-escaped), and the last id.
    PollReply {
        conn: ConnId,
        messages: Vec<Kept>,
        last_seq: u64,
    },
    /// From the sidecar: stop accepting and close every connection with 1001, spread
    /// evenly over `spread_ms`.
    Drain { spread_ms: u64 },
}

/// What an owner shard asks of the node's broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerCmd {
    /// The node now has subscribers of this channel.
    Subscribe(ChannelName),
    /// The node no longer has subscribers of this channel.
    Unsubscribe(ChannelName),
}
