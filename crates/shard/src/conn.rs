//! One connection's state: a small slab entry that holds no buffer while idle. The
//! handshake buffer exists only until the upgrade, the decoder's buffers only while a
//! frame or a fragmented message is partial, the write queue only while frames wait.

use crate::conn_channels::ConnChannels;
use crate::write_queue::WriteQueue;
use ringcast_proto::{Decoder, Role};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the HTTP upgrade request.
    Handshake,
    /// Upgraded: frames flow.
    Open,
    /// A close frame or an HTTP error was queued; no more application data.
    Closing,
}

/// How the connection talks to its client once admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Transport {
    /// RFC 6455 frames.
    WebSocket = 0,
    /// `text/event-stream` (`GET /sse/<channel>`).
    Sse = 1,
    /// One long-poll request (`GET /poll/<channel>`).
    Poll = 2,
}

impl Transport {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::Poll => "poll",
        }
    }
}

/// State of one client connection.
pub struct Conn {
    /// The socket, owned by the reactor glue; the shard only names it in actions.
    pub fd: i32,
    /// Life phase.
    pub phase: Phase,
    /// WebSocket, SSE or long-poll (meaningful once open).
    pub transport: Transport,
    /// A multishot recv is armed.
    pub recv_active: bool,
    /// A send is in flight; its data is the front of `queue`.
    pub send_inflight: bool,
    /// Already in the shard's list of connections ready to send.
    pub in_ready: bool,
    /// The write side was shut down (our FIN sent) after the close was flushed.
    pub wr_shut: bool,
    /// The peer is gone or must be dropped: free the slot once no op is in flight.
    pub gone: bool,
    /// Asked the reactor to abort (shut down both ways) to end the recv.
    pub aborted: bool,
    /// The route is `/echo`.
    pub echo: bool,
    /// permessage-deflate window (log2) for messages to this client; 0 = not negotiated.
    pub deflate_bits: u8,
    /// Why it closed, once decided (counted exactly once).
    pub reason: Option<&'static str>,
    /// Channel subscriptions.
    pub channels: ConnChannels,
    /// Shard clock (ms) when the unanswered ping was sent; 0 when none is outstanding.
    pub ping_sent_ms: u64,
    /// Partial upgrade request (empty and unallocated once open).
    pub handshake: Vec<u8>,
    /// Frame decoder.
    pub decoder: Decoder,
    /// Frames waiting to be sent.
    pub queue: WriteQueue,
}

impl Conn {
    /// A freshly accepted connection.
    pub fn new(fd: i32, max_message_bytes: usize) -> Self {
        Conn {
            fd,
            phase: Phase::Handshake,
            transport: Transport::WebSocket,
            recv_active: true,
            send_inflight: false,
            in_ready: false,
            wr_shut: false,
            gone: false,
            aborted: false,
            echo: false,
            deflate_bits: 0,
            reason: None,
            channels: ConnChannels::None,
            ping_sent_ms: 0,
            handshake: Vec::new(),
            decoder: Decoder::new(Role::Server, max_message_bytes),
            queue: WriteQueue::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Conn;

    #[test]
    fn idle_connection_is_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 224, "Conn is {size} bytes");
    }
}
