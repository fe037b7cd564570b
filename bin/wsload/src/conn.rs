//! One client connection's state (a slab slot of the [client core](crate::client_core))
//! and what it does with each decoded WebSocket message: count it, check its sequence
//! number, record its latency, answer pings with masked pongs, answer a server close. An
//! open idle connection is this struct and nothing else: no socket handle (the io_uring
//! glue keeps those), no read buffer (reads land in the reactor's shared buffer ring), no
//! send buffer (borrowed from the pool only while sending), no task, no timer.

use std::time::Instant;

use ringcast_proto::{Decoder, Message, OpCode, Role, close_payload, code, encode_frame};

use crate::figures::Figures;
use crate::payload::parse_body;
use crate::resume::{Resume, Seen};
use crate::rng::Rng;
use crate::send_pool::SendPool;
use crate::seq::{SeqEvent, SeqTracker};

/// Largest message a connection accepts.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Slot unused.
    Free,
    /// TCP connect submitted.
    Connecting,
    /// Upgrade request sent, waiting for the 101.
    Handshaking,
    /// WebSocket open.
    Open,
    /// A close frame was sent or received; waiting for the server to end the TCP connection.
    Closing,
    /// Finished (failed, ended or aborted); waiting for in-flight operations before the
    /// socket is closed.
    Done,
}

/// Bits of [`Link::flags`].
pub mod flag {
    /// A multishot recv is armed.
    pub const RECV_ARMED: u16 = 1;
    /// A send is in flight.
    pub const SEND_IN_FLIGHT: u16 = 1 << 1;
    /// A connect is in flight.
    pub const CONNECT_IN_FLIGHT: u16 = 1 << 2;
    /// wsload sent its close frame.
    pub const CLOSE_SENT: u16 = 1 << 3;
    /// The server's close frame arrived.
    pub const CLOSE_RECEIVED: u16 = 1 << 4;
    /// Still waiting for `--expect-messages`.
    pub const AWAITING: u16 = 1 << 5;
    /// Counted in `conns_complete`.
    pub const COMPLETE: u16 = 1 << 6;
    /// A gap or duplicate was seen.
    pub const OUT_OF_ORDER: u16 = 1 << 7;
    /// Reopen the connection once it is closed (churn).
    pub const REOPEN: u16 = 1 << 8;
    /// This connection is a reopening (churn).
    pub const RECONNECT: u16 = 1 << 9;
    /// The socket was shut down (so every pending operation on it completes).
    pub const ABORTED: u16 = 1 << 10;
    /// The server's close frame arrived before wsload sent one.
    pub const SERVER_CLOSED: u16 = 1 << 11;
    /// `--resume`: the server ended this connection; the connection number reopens and
    /// keeps its expectations (they are not given up with the connection).
    pub const RESUMING: u16 = 1 << 12;
    /// What a resumed connection takes over from the one before it.
    pub const KEPT_ACROSS_RESUMES: u16 = AWAITING | COMPLETE | OUT_OF_ORDER;
}

/// Handshake state, boxed so that open connections do not carry it.
#[derive(Debug)]
pub struct Handshake {
    /// `Sec-WebSocket-Key` sent.
    pub key: String,
    /// Response bytes while the response is split over several receives.
    pub response: Vec<u8>,
    /// When the connect started.
    pub started: Instant,
}

/// Bytes being sent and bytes waiting for the send in flight, boxed and present only while
/// the connection has something to send.
#[derive(Debug, Default)]
pub struct Outbox {
    /// The bytes of the send in flight (must not change until it completes).
    pub sending: Vec<u8>,
    /// How much of `sending` the kernel has taken.
    pub offset: usize,
    /// Frames queued behind the send in flight.
    pub queued: Vec<u8>,
}

/// A connection slot: the decoder plus everything else (split so a message callback of the
/// decoder can update the rest).
#[derive(Debug)]
pub struct Slot {
    /// Frame decoder (client role).
    pub decoder: Decoder,
    /// Everything else.
    pub link: Link,
}

/// A connection apart from its decoder.
#[derive(Debug)]
pub struct Link {
    /// Generation, masked to the reactor's 24 bits; bumped on every reuse of the slot.
    pub r#gen: u32,
    /// Connection number in the address plan.
    pub index: u32,
    /// Life stage.
    pub state: State,
    /// [`flag`] bits.
    pub flags: u16,
    /// Next echo sequence number.
    pub echo_seq: u32,
    /// Sequence check of received bodies.
    pub seq: SeqTracker,
    /// Data messages received.
    pub messages: u64,
    /// Present while handshaking.
    pub handshake: Option<Box<Handshake>>,
    /// Present while sending.
    pub out: Option<Box<Outbox>>,
    /// TLS (`wss://`): what is queued in `out` is plaintext until it is staged.
    pub tls: Option<Box<rustls::ClientConnection>>,
}

impl Slot {
    /// An unused slot.
    pub fn free() -> Self {
        Self {
            decoder: Decoder::new(Role::Client, MAX_MESSAGE_BYTES),
            link: Link {
                r#gen: 0,
                index: 0,
                state: State::Free,
                flags: 0,
                echo_seq: 0,
                seq: SeqTracker::default(),
                messages: 0,
                handshake: None,
                out: None,
                tls: None,
            },
        }
    }
}

/// What the message handler needs besides the connection.
pub struct MessageCtx<'a> {
    /// The worker's figures.
    pub figures: &'a mut Figures,
    /// Open connections still waiting for `--expect-messages`.
    pub awaiting: &'a mut u64,
    /// Send buffers.
    pub pool: &'a mut SendPool,
    /// Masking keys.
    pub rng: &'a mut Rng,
    /// `--expect-messages`.
    pub expect_messages: Option<u64>,
    /// Record tick arrivals.
    pub ticks: bool,
    /// Receive time.
    pub now: Instant,
    /// Receive time, seconds since the run started.
    pub at_s: f64,
    /// Receive time, wall clock (Unix ns).
    pub now_ns: u64,
    /// `--resume`: the connection number's position (its messages are JSON-framed).
    pub resume: Option<&'a mut Resume>,
}

impl Link {
    /// Whether `flag` is set.
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Whether bytes are waiting to be sent and no send is in flight.
    pub fn wants_send(&self) -> bool {
        !self.has(flag::SEND_IN_FLIGHT)
            && (self
                .out
                .as_ref()
                .is_some_and(|o| o.offset < o.sending.len() || !o.queued.is_empty())
                || self.tls.as_ref().is_some_and(|t| t.wants_write()))
    }

    /// TLS: once nothing is left to send, encrypts the queued plaintext (and whatever
    /// else TLS has to say) into the next send.
    pub fn stage_tls(&mut self, pool: &mut SendPool) {
        let Some(mut tls) = self.tls.take() else {
            return;
        };
        let idle = self
            .out
            .as_ref()
            .is_none_or(|o| o.offset >= o.sending.len());
        let plain = self.out.as_ref().is_some_and(|o| !o.queued.is_empty());
        if idle && (plain || tls.wants_write()) {
            let out = self.outbox(pool);
            out.sending.clear();
            out.offset = 0;
            crate::tls_client::encrypt(&mut tls, &out.queued, &mut out.sending);
            out.queued.clear();
        }
        self.tls = Some(tls);
    }

    /// Queues raw bytes (the upgrade request).
    pub fn queue_raw(&mut self, pool: &mut SendPool, bytes: &[u8]) {
        self.outbox(pool).queued.extend_from_slice(bytes);
    }

    /// Queues one masked frame.
    pub fn queue_frame(&mut self, pool: &mut SendPool, rng: &mut Rng, op: OpCode, payload: &[u8]) {
        let mask = rng.mask();
        encode_frame(&mut self.outbox(pool).queued, op, payload, Some(mask));
    }

    /// Queues close 1000 and marks it sent.
    pub fn queue_close(&mut self, pool: &mut SendPool, rng: &mut Rng, close_code: u16) {
        self.queue_frame(pool, rng, OpCode::Close, &close_payload(close_code, ""));
        self.flags |= flag::CLOSE_SENT;
    }

    pub(crate) fn outbox(&mut self, pool: &mut SendPool) -> &mut Outbox {
        self.out.get_or_insert_with(|| {
            Box::new(Outbox {
                sending: pool.take(),
                offset: 0,
                queued: pool.take(),
            })
        })
    }

    /// Returns the outbox's buffers to the pool (only when no send is in flight).
    pub fn drop_outbox(&mut self, pool: &mut SendPool) {
        if self.has(flag::SEND_IN_FLIGHT) {
            return;
        }
        if let Some(out) = self.out.take() {
            let Outbox {
                sending, queued, ..
            } = *out;
            pool.give(sending);
            pool.give(queued);
        }
    }

    /// Handles one decoded message.
    pub fn on_message(&mut self, message: Message<'_>, ctx: &mut MessageCtx<'_>) {
        match message {
            Message::Text(payload) | Message::Binary(payload) => self.on_data(payload, ctx),
            Message::Ping(payload) => {
                ctx.figures.counters.pings += 1;
                self.queue_frame(ctx.pool, ctx.rng, OpCode::Pong, payload);
            }
            Message::Pong(_) => {}
            Message::Close(frame) => {
                self.flags |= flag::CLOSE_RECEIVED;
                if !self.has(flag::CLOSE_SENT) {
                    self.flags |= flag::SERVER_CLOSED;
                    self.queue_close(ctx.pool, ctx.rng, frame.map_or(code::NORMAL, |f| f.code));
                }
            }
        }
    }

    fn on_data(&mut self, payload: &[u8], ctx: &mut MessageCtx<'_>) {
        let figures = &mut *ctx.figures;
        // With `--resume` the order comes from the message's offset (kept across
        // reconnections), not from the body's sequence number.
        let (body, order) = match ctx.resume.as_deref_mut() {
            None => {
                let body = parse_body(payload);
                (body, body.seq.map(|seq| self.seq.observe(seq)))
            }
            Some(resume) => match resume.on_text(payload, ctx.now, figures) {
                Seen::Message { body, order } => (parse_body(body.as_bytes()), order),
                Seen::Control => return,
                Seen::Malformed => {
                    figures.counters.protocol_errors += 1;
                    return;
                }
            },
        };
        figures.add_message(payload.len(), ctx.at_s);
        self.messages += 1;
        if let Some(stamp_ns) = body.stamp_ns {
            figures
                .latency
                .record_ns(ctx.now_ns.saturating_sub(stamp_ns));
        }
        if ctx.ticks
            && let Some(seq) = body.seq
        {
            figures.ticks.record(seq, body.stamp_ns, ctx.now_ns);
        }
        if let Some(order) = order {
            let counters = &mut figures.counters;
            match order {
                SeqEvent::InOrder => {}
                SeqEvent::Gap(missing) => {
                    counters.seq_gaps += missing;
                    self.flags |= flag::OUT_OF_ORDER;
                }
                SeqEvent::Dup => {
                    counters.seq_dups += 1;
                    self.flags |= flag::OUT_OF_ORDER;
                }
                SeqEvent::Late => {
                    counters.seq_dups += 1;
                    counters.seq_out_of_order += 1;
                    self.flags |= flag::OUT_OF_ORDER;
                }
            }
        }
        let Some(expected) = ctx.expect_messages else {
            return;
        };
        if self.has(flag::AWAITING) && self.messages >= expected {
            self.flags &= !flag::AWAITING;
            *ctx.awaiting = ctx.awaiting.saturating_sub(1);
        }
        let complete = self.messages == expected && !self.has(flag::OUT_OF_ORDER);
        if complete != self.has(flag::COMPLETE) {
            self.flags ^= flag::COMPLETE;
            if complete {
                figures.counters.conns_complete += 1;
            } else {
                figures.counters.conns_complete -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared state a message handler works on.
    #[derive(Default)]
    struct World {
        figures: Figures,
        awaiting: u64,
        pool: SendPool,
    }

    fn ctx<'a>(world: &'a mut World, rng: &'a mut Rng, expect: Option<u64>) -> MessageCtx<'a> {
        MessageCtx {
            figures: &mut world.figures,
            awaiting: &mut world.awaiting,
            pool: &mut world.pool,
            rng,
            expect_messages: expect,
            ticks: true,
            now: Instant::now(),
            at_s: 1.5,
            now_ns: 10_000_000,
            resume: None,
        }
    }

    fn open_link() -> Link {
        let mut slot = Slot::free();
        slot.link.state = State::Open;
        slot.link
    }

    #[test]
    fn idle_connection_is_small() {
        let size = std::mem::size_of::<Slot>();
        assert!(size <= 160, "slot is {size} bytes");
    }

    #[test]
    fn counts_checks_sequence_and_latency() {
        let (mut world, mut rng) = (World::default(), Rng::new(1));
        world.awaiting = 1;
        let mut link = open_link();
        link.flags |= flag::AWAITING;
        let mut c = ctx(&mut world, &mut rng, Some(3));
        link.on_message(Message::Text(b"0:9000000:x"), &mut c);
        link.on_message(Message::Binary(b"1:9000000:"), &mut c);
        link.on_message(Message::Text(b"2"), &mut c);
        assert_eq!(c.figures.counters.conns_complete, 1);
        assert_eq!(*c.awaiting, 0);
        link.on_message(Message::Text(b"2"), &mut c);
        link.on_message(Message::Text(b"1"), &mut c);
        link.on_message(Message::Text(b"5"), &mut c);
        let counters = c.figures.counters;
        assert_eq!(counters.messages, 6);
        assert_eq!(counters.seq_dups, 2);
        assert_eq!(counters.seq_out_of_order, 1);
        assert_eq!(counters.seq_gaps, 2);
        assert_eq!(counters.conns_complete, 0);
        let latency = c.figures.latency.summary().unwrap();
        assert_eq!(latency.count, 2);
        assert!((latency.p50_ms - 1.0).abs() < 0.01, "{latency:?}");
        assert_eq!(c.figures.ticks.arrivals().len(), 6);
        assert_eq!(c.figures.first_message_at_s, Some(1.5));
    }

    #[test]
    fn answers_ping_and_server_close_with_masked_frames() {
        let (mut world, mut rng) = (World::default(), Rng::new(1));
        let mut link = open_link();
        let mut c = ctx(&mut world, &mut rng, None);
        link.on_message(Message::Ping(b"hi"), &mut c);
        link.on_message(
            Message::Close(Some(ringcast_proto::CloseFrame {
                code: 1001,
                reason: "bye",
            })),
            &mut c,
        );
        assert_eq!(c.figures.counters.pings, 1);
        assert!(link.has(flag::CLOSE_SENT) && link.has(flag::SERVER_CLOSED));
        assert!(link.wants_send());
        let out = link.out.as_mut().unwrap();
        let mut server = Decoder::new(Role::Server, 1 << 10);
        let mut seen = Vec::new();
        server
            .feed(&mut out.queued, &mut |m| seen.push(format!("{m:?}")))
            .unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].starts_with("Pong"), "{seen:?}");
        assert!(seen[1].contains("1001"), "{seen:?}");
    }

    #[test]
    fn outbox_goes_back_to_the_pool() {
        let mut pool = SendPool::default();
        let mut link = open_link();
        link.queue_raw(&mut pool, b"GET /");
        link.flags |= flag::SEND_IN_FLIGHT;
        link.drop_outbox(&mut pool);
        assert!(link.out.is_some(), "kept while a send is in flight");
        link.flags &= !flag::SEND_IN_FLIGHT;
        link.drop_outbox(&mut pool);
        assert!(link.out.is_none());
    }
}
