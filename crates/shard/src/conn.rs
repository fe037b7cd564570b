//! One connection's state: a small slab entry that holds no buffer while idle. The
//! request head buffer exists only while a request spans receives, the decoder only
//! while a frame or a fragmented message is partial, the write queue only while frames
//! wait; each is one pointer (or an enum around one) until then, so an idle connection
//! costs its slot and nothing else. `idle_connection_is_small` holds the line.
//!
//! Its life is a [`Phase`]: handshaking, open, then closing through the steps of
//! [`CloseStep`]; the reason a connection closed is decided (and counted) exactly once,
//! when it enters [`Phase::Closing`]. Three flags track what the reactor holds for it
//! (an armed recv, a send in flight, a place in a ready list); they are independent of
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
    /// Already in one of the shard's lists of connections ready to send (answers or
    /// the rest; never both).
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
    /// A token's grant, a partial request head, TLS: boxed together, only while one of
    /// them is in use (see [`ConnExtras`]).
    extras: Option<Box<ConnExtras>>,
    /// Counted in the shard's connection slots (see `ConnSlots`) until it is freed.
    pub(crate) holds_slot: bool,
    /// Frame decoder.
    pub(crate) decoder: ConnDecoder,
    /// Frames waiting to be sent.
    pub(crate) queue: WriteQueue,
    /// The source address, when a per-address limit needs it.
    peer: PeerAddr,
}

/// What most connections never hold, in one box behind [`Conn::extras`]: a plain,
/// tokenless connection whose request came in one receive never allocates it, and it is
/// freed again once all three are empty.
#[derive(Default)]
struct ConnExtras {
    /// Its token's grant and expiry deadline.
    grant: Option<Box<ConnGrant>>,
    /// A request head that spans receives (emptied once open).
    head: RequestHead,
    /// TLS state on a TLS port.
    tls: Option<Box<TlsSession>>,
}

impl ConnExtras {
    fn is_unused(&self) -> bool {
        self.grant.is_none() && self.head.is_empty() && self.tls.is_none()
    }
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
            extras: None,
            holds_slot: false,
            decoder: ConnDecoder::default(),
            queue: WriteQueue::default(),
            peer: PeerAddr::new(peer),
        }
    }

    /// Whether it has bytes to send now: queued frames (on TLS, once application data
    /// may flow) or ciphertext.
    pub(crate) fn wants_send(&self) -> bool {
        match self.tls() {
            None => !self.queue.is_empty(),
            Some(tls) => tls.has_unsent() || tls.is_open() && !self.queue.is_empty(),
        }
    }

    fn extras(&mut self) -> &mut ConnExtras {
        self.extras.get_or_insert_default()
    }

    /// Frees the extras once nothing is in them.
    fn tidy(&mut self) {
        if self.extras.as_ref().is_some_and(|e| e.is_unused()) {
            self.extras = None;
        }
    }

    /// Its token's grant (None when admitted without a token).
    pub(crate) fn grant(&self) -> Option<&ConnGrant> {
        self.extras.as_ref()?.grant.as_deref()
    }

    /// Its token's grant, to change.
    pub(crate) fn grant_mut(&mut self) -> Option<&mut ConnGrant> {
        self.extras.as_mut()?.grant.as_deref_mut()
    }

    /// Holds a token's grant.
    pub(crate) fn set_grant(&mut self, grant: ConnGrant) {
        self.extras().grant = Some(Box::new(grant));
    }

    /// Takes the partial request head out (empty when there is none).
    pub(crate) fn take_head(&mut self) -> RequestHead {
        let head = self.extras.as_mut().map(|e| std::mem::take(&mut e.head));
        self.tidy();
        head.unwrap_or_default()
    }

    /// Keeps a partial request head for the next receive (nothing when it is empty).
    pub(crate) fn put_head(&mut self, head: RequestHead) {
        if !head.is_empty() {
            self.extras().head = head;
        }
    }

    /// Frees the request head (the connection was admitted or refused).
    pub(crate) fn clear_head(&mut self) {
        drop(self.take_head());
    }

    /// Its TLS session (None on a plain port).
    pub(crate) fn tls(&self) -> Option<&TlsSession> {
        self.extras.as_ref()?.tls.as_deref()
    }

    /// Its TLS session, to drive.
    pub(crate) fn tls_mut(&mut self) -> Option<&mut TlsSession> {
        self.extras.as_mut()?.tls.as_deref_mut()
    }

    /// Its TLS session and its queue together (a send encrypts from one into the other).
    pub(crate) fn tls_and_queue(&mut self) -> (Option<&mut TlsSession>, &mut WriteQueue) {
        let tls = self.extras.as_mut().and_then(|e| e.tls.as_deref_mut());
        (tls, &mut self.queue)
    }

    /// Takes the TLS session out while the shard borrows the rest of itself; give it
    /// back with [`Conn::set_tls`]. The extras box stays (empty or not) for the session
    /// to come back to.
    pub(crate) fn take_tls(&mut self) -> Option<Box<TlsSession>> {
        self.extras.as_mut()?.tls.take()
    }

    /// Holds a TLS session.
    pub(crate) fn set_tls(&mut self, session: Box<TlsSession>) {
        self.extras().tls = Some(session);
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
    /// recorded (the ping should go out). When the clock's low 32 bits are 0, which
    /// means "none", it records one millisecond earlier: an age may read one long, never
    /// short, so a pong deadline checked exactly on time still fires.
    pub(crate) fn ping_sent(&mut self, now_ms: u64) -> bool {
        if self.ping_sent_ms != 0 {
            return false;
        }
        self.ping_sent_ms = match now_ms as u32 {
            0 => u32::MAX,
            low => low,
        };
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
        assert!(size <= 80, "Conn is {size} bytes");
    }

    #[test]
    fn extras_exist_only_while_used() {
        let mut conn = Conn::new(3, None);
        conn.put_head(crate::request_head::RequestHead::default());
        assert!(conn.extras.is_none(), "an empty head allocates nothing");
        let mut head = crate::request_head::RequestHead::default();
        head.keep(b"GET / HTTP/1.1\r\n");
        conn.put_head(head);
        assert!(conn.extras.is_some());
        assert!(!conn.take_head().is_empty());
        assert!(conn.extras.is_none(), "freed once empty");
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

        let wrapped = 1u64 << 32;
        assert!(conn.ping_sent(wrapped), "low bits 0: still recorded");
        let age = conn.ping_age_ms(wrapped + 10_000);
        assert!(
            age.is_some_and(|a| a >= 10_000),
            "never reads short: {age:?}"
        );
    }
}
