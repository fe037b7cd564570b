//! One connection's state: a small slab entry that holds no buffer while idle. The
//! request head buffer exists only while a request spans receives, the decoder only
//! while a frame or a fragmented message is partial, the write queue only while frames
//! wait; each is one pointer (or an enum around one) until then, so an idle connection
//! costs its slot and nothing else. `idle_connection_is_small` holds the line.
//!
//! Its life is a [`Phase`]: handshaking, open, then closing through the steps of
//! [`CloseStep`]; the reason a connection closed is decided (and counted) exactly once,
//! when it enters [`Phase::Closing`]. Three flags track what the reactor holds for it
//! (an armed recv, a send in flight, a place in the ready list); they are independent of
//! the phase.

use crate::close_reason::CloseReason;
use crate::conn_channels::ConnChannels;
use crate::conn_decoder::ConnDecoder;
use crate::ids::ConnId;
use crate::request_head::RequestHead;
use crate::tls_session::TlsSession;
use crate::token_grant::ConnGrant;
use crate::write_queue::WriteQueue;
use std::net::{IpAddr, Ipv6Addr};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading the HTTP upgrade request.
    Handshake,
    /// Admitted: frames, events or a held poll flow.
    Open,
    /// No more application data; `reason` was counted when it got here.
    Closing {
        /// Why it closes.
        reason: CloseReason,
        /// How far the close has come.
        step: CloseStep,
    },
}

/// The steps of a close, in order; a connection may skip straight to
/// [`CloseStep::Dropping`] (dead peer, timeout, drain during the handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseStep {
    /// Its last bytes (a close frame or an HTTP answer) are queued or being sent; once
    /// the queue is empty the write side is shut down.
    Flushing,
    /// Our FIN is sent; waiting for the peer's (the recv ends) or the linger timer.
    WriteShut,
    /// Nothing more goes out: the slot is freed once no recv or send is in flight.
    Dropping {
        /// The reactor was asked to shut the socket down both ways, which ends the
        /// operations still in flight.
        aborted: bool,
    },
}

/// How the connection talks to its client once admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Transport {
    /// RFC 6455 frames.
    WebSocket = 0,
    /// `text/event-stream` (`GET /sse/<channel>`).
    Sse = 1,
    /// One long-poll request (`GET /poll/<channel>`).
    Poll = 2,
}

impl Transport {
    /// The `transport` label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::Poll => "poll",
        }
    }
}

/// How a WebSocket connection's messages are framed (`?format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// The payload as it was published (the default).
    Raw,
    /// JSON objects that name the channel and carry positions: `subscribed` on each
    /// subscribe, then one `message` per message.
    Json,
}

/// A peer address in 16 bytes: IPv4 as IPv4-mapped IPv6, all zeros (`::`, which no peer
/// has) when unknown. `Option<IpAddr>` takes 17, which padding makes 24 in every slot.
#[derive(Debug, Clone, Copy)]
struct PeerAddr([u8; 16]);

impl PeerAddr {
    fn new(ip: Option<IpAddr>) -> Self {
        PeerAddr(match ip {
            None => [0; 16],
            Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
            Some(IpAddr::V6(v6)) => v6.octets(),
        })
    }

    fn ip(self) -> Option<IpAddr> {
        let v6 = Ipv6Addr::from(self.0);
        (!v6.is_unspecified()).then(|| v6.to_canonical())
    }
}

/// State of one client connection.
pub(crate) struct Conn {
    /// The socket, owned by the reactor glue; the shard only names it in actions.
    pub(crate) fd: i32,
    /// Its slot's generation, set by `ConnTable::insert` (part of its `ConnId`).
    pub(crate) generation: u32,
    /// Life phase.
    pub(crate) phase: Phase,
    /// WebSocket, SSE or long-poll (meaningful once open).
    pub(crate) transport: Transport,
    /// A multishot recv is armed.
    pub(crate) recv_active: bool,
    /// A send is in flight; its data is the front of `queue`.
    pub(crate) send_inflight: bool,
    /// Already in the shard's list of connections ready to send.
    pub(crate) in_ready: bool,
    /// The route is `/echo`.
    pub(crate) echo: bool,
    /// Raw or JSON message framing (WebSocket).
    pub(crate) framing: Framing,
    /// History requests sent for it whose answer has not come yet (while any is
    /// out, deliveries check whether they are for a channel it resumes).
    pub(crate) resuming: u16,
    /// permessage-deflate window (log2) for messages to this client; 0 = not negotiated
    /// (when negotiated, the client may send compressed messages too).
    pub(crate) deflate_bits: u8,
    /// Channel subscriptions.
    pub(crate) channels: ConnChannels,
    /// Low 32 bits of the shard clock (ms) when the unanswered ping was sent; 0 when
    /// none is outstanding (see [`Conn::ping_sent`]: ages are exact below 49 days).
    ping_sent_ms: u32,
    /// Its token's grant and expiry deadline (None when admitted without a token).
    pub(crate) grant: Option<Box<ConnGrant>>,
    /// Partial request head (empty and unallocated once open, or when the request came
    /// in one receive).
    pub(crate) head: RequestHead,
    /// Counted in the shard's connection slots (see `ConnSlots`) until it is freed.
    pub(crate) holds_slot: bool,
    /// Frame decoder.
    pub(crate) decoder: ConnDecoder,
    /// Frames waiting to be sent.
    pub(crate) queue: WriteQueue,
    /// The source address, when a per-address limit needs it.
    peer: PeerAddr,
    /// TLS state on a TLS port (boxed: plain connections pay one pointer).
    pub(crate) tls: Option<Box<TlsSession>>,
}

impl Conn {
    /// A freshly accepted connection.
    pub(crate) fn new(fd: i32, peer: Option<IpAddr>) -> Self {
        Conn {
            fd,
            generation: 0,
            phase: Phase::Handshake,
            transport: Transport::WebSocket,
            recv_active: true,
            send_inflight: false,
            in_ready: false,
            echo: false,
            framing: Framing::Raw,
            resuming: 0,
            deflate_bits: 0,
            channels: ConnChannels::None,
            ping_sent_ms: 0,
            grant: None,
            head: RequestHead::default(),
            holds_slot: false,
            decoder: ConnDecoder::default(),
            queue: WriteQueue::default(),
            peer: PeerAddr::new(peer),
            tls: None,
        }
    }

    /// Whether it has bytes to send now: queued frames (on TLS, once application data
    /// may flow) or ciphertext.
    pub(crate) fn wants_send(&self) -> bool {
        match &self.tls {
            None => !self.queue.is_empty(),
            Some(tls) => tls.has_unsent() || tls.is_open() && !self.queue.is_empty(),
        }
    }

    /// Its id, in slot `idx`.
    pub(crate) fn id_at(&self, idx: u32) -> ConnId {
        ConnId {
            idx,
            generation: self.generation,
        }
    }

    /// The source address, when a per-address limit needed it at accept.
    pub(crate) fn peer(&self) -> Option<IpAddr> {
        self.peer.ip()
    }

    /// Records a ping sent at `now_ms` unless one is outstanding; returns whether it was
    /// recorded (the ping should go out).
    pub(crate) fn ping_sent(&mut self, now_ms: u64) -> bool {
        if self.ping_sent_ms != 0 {
            return false;
        }
        self.ping_sent_ms = (now_ms as u32).max(1);
        true
    }

    /// How long the outstanding ping has waited, if one is out.
    pub(crate) fn ping_age_ms(&self, now_ms: u64) -> Option<u64> {
        (self.ping_sent_ms != 0).then(|| u64::from((now_ms as u32).wrapping_sub(self.ping_sent_ms)))
    }

    /// A pong came: the outstanding ping's round trip, if one was out.
    pub(crate) fn pong_received(&mut self, now_ms: u64) -> Option<u64> {
        let age = self.ping_age_ms(now_ms);
        self.ping_sent_ms = 0;
        age
    }

    /// Whether it is being dropped: nothing more is sent to it.
    pub(crate) fn dropping(&self) -> bool {
        matches!(
            self.phase,
            Phase::Closing {
                step: CloseStep::Dropping { .. },
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Conn;

    #[test]
    fn idle_connection_is_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 96, "Conn is {size} bytes");
    }

    #[test]
    fn peer_addresses_round_trip_in_16_bytes() {
        for ip in ["192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let conn = Conn::new(3, Some(ip));
            assert_eq!(conn.peer(), Some(ip.to_canonical()));
        }
        assert_eq!(Conn::new(3, None).peer(), None);
    }

    #[test]
    fn ping_ages_survive_the_clock_wrapping_32_bits() {
        let mut conn = Conn::new(3, None);
        let sent = u64::from(u32::MAX) - 5;
        assert!(conn.ping_sent(sent));
        assert!(!conn.ping_sent(sent + 1), "one outstanding at a time");
        assert_eq!(conn.ping_age_ms(sent + 1_000), Some(1_000));
        assert_eq!(conn.pong_received(sent + 20), Some(20));
        assert_eq!(conn.ping_age_ms(sent + 30), None);
    }
}
