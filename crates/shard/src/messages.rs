//! Messages that cross threads: between shards (through flume) and from shards to the
//! sidecar's broker.

use crate::history::Recovered;
use crate::ids::{ChannelName, ConnId};
use crate::position::{Epoch, Position, Since};
use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

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
    /// To the channel's owner: a message published to `channel` (from the broker),
    /// with the position the broker gave it when the broker keeps the history (Redis).
    Publish {
        channel: ChannelName,
        payload: Bytes,
        binary: bool,
        position: Option<Position>,
    },
    /// From the owner to a shard with subscribers: the WebSocket frame encoded once and
    /// shared by all, plus the raw message and its position for the other framings
    /// (SSE, long-poll, JSON).
    Deliver {
        channel: ChannelName,
        frame: Bytes,
        /// The same message as one compressed frame (window 15), when compression is on
        /// and the message is large enough; shared by every deflate subscriber.
        deflated: Option<Bytes>,
        payload: Bytes,
        binary: bool,
        /// Its place in the channel's history, when the channel keeps one.
        position: Option<Position>,
    },
    /// To the owner: connection `conn` on `shard` subscribed to `channel` and asks for
    /// the kept messages `since` (None: only the channel's position). `poll`: it is a
    /// long poll (which gives the channel a poll ring and keeps it lingering). Sent
    /// after the subscriber's `Interest`, on the same lane.
    HistoryRequest {
        channel: ChannelName,
        since: Option<Since>,
        poll: bool,
        shard: u16,
        conn: ConnId,
    },
    /// From the owner: its answer. Every
    /// `Deliver` of the channel the owner sent before it is covered by the answer,
    /// every later one is newer, since both travel the same FIFO lane.
    HistoryReply {
        conn: ConnId,
        channel: ChannelName,
        recovered: Recovered,
    },
    /// From the sidecar to the owner: `channel`'s history as the broker keeps it (None:
    /// it could not be read), asked for by `BrokerCmd::FetchHistory`.
    HistoryFetched {
        channel: ChannelName,
        fetched: Option<FetchedHistory>,
    },
    /// From the sidecar (the admin API's `GET /channels/<ch>`) to the channel's owner:
    /// tell `report` the channel's last position (None: it keeps no history here).
    Position {
        channel: ChannelName,
        report: PositionReport,
    },
    /// To the channels' owner: how the sender's local subscriber counts of these
    /// channels changed since its previous report (see `occupancy`).
    Occupancy { deltas: Vec<(ChannelName, i32)> },
    /// From the sidecar: stop accepting and close every connection with 1001, spread
    /// evenly over `spread_ms`.
    Drain { spread_ms: u64 },
    /// From the sidecar (the admin API's `POST /disconnect`, or the same request from
    /// another node through the broker): close every open connection `target` names
    /// (WebSocket 4003, SSE `disconnected` event, long poll 403), then tell `report`
    /// how many that was.
    Disconnect {
        target: DisconnectTarget,
        report: DisconnectReport,
    },
}

/// Which connections a disconnect closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectTarget {
    /// Every connection admitted with a token whose grant names this `sub`.
    Sub(Box<str>),
    /// Every subscriber of this channel.
    Channel(ChannelName),
}

/// Where a shard reports how many connections a [`ShardMsg::Disconnect`] closed: a
/// callback the sidecar builds around its own channel (this crate knows no async
/// runtime). Called once per message, on the shard's thread.
#[derive(Clone)]
pub struct DisconnectReport(Arc<dyn Fn(u64) + Send + Sync>);

impl DisconnectReport {
    /// A report that calls `report` with each shard's count.
    pub fn new(report: impl Fn(u64) + Send + Sync + 'static) -> Self {
        DisconnectReport(Arc::new(report))
    }

    /// Reports `closed` connections.
    pub(crate) fn send(&self, closed: u64) {
        (self.0)(closed);
    }
}

impl fmt::Debug for DisconnectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DisconnectReport(..)")
    }
}

/// Where an owner reports a channel's last position for a [`ShardMsg::Position`]: a
/// callback the sidecar builds around its own channel. Called once, on the shard's
/// thread.
#[derive(Clone)]
pub struct PositionReport(Arc<dyn Fn(Option<Position>) + Send + Sync>);

impl PositionReport {
    /// A report that calls `report` with the position.
    pub fn new(report: impl Fn(Option<Position>) + Send + Sync + 'static) -> Self {
        PositionReport(Arc::new(report))
    }

    /// Reports `position`.
    pub(crate) fn send(&self, position: Option<Position>) {
        (self.0)(position);
    }
}

impl fmt::Debug for PositionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PositionReport(..)")
    }
}

/// A channel's history read from the broker: its epoch and kept messages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedHistory {
    /// The epoch (None: the broker keeps no history for the channel).
    pub epoch: Option<Epoch>,
    /// (offset, payload, binary) of each kept message, oldest first.
    pub messages: Vec<(u64, Bytes, bool)>,
}

/// What an owner shard asks of the node's broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerCmd {
    /// The node now has subscribers of this channel.
    Subscribe(ChannelName),
    /// The node no longer has subscribers of this channel.
    Unsubscribe(ChannelName),
    /// Read this channel's history from the broker, for a recovery the owner's cache
    /// cannot answer; the answer comes back as `ShardMsg::HistoryFetched`.
    FetchHistory(ChannelName),
}
