//! The shard state machine and its connection lifecycle: accept, recv and send
//! completions, timers, and the close steps that end in a freed slot. The subjects a
//! connection meets on the way live in the child modules: the handshake
//! ([`handshake`]), WebSocket frames ([`frames`]), client commands ([`client_command`]),
//! subscriptions and owner interest ([`subscriptions`]), fan-out of shared frames
//! ([`fanout`]), resuming from a position ([`recovery`]) and the JSON framing
//! ([`json_framing`]), the SSE and long-poll transports ([`sse`], [`poll`]), the close
//! at a token's expiry ([`token_expiry`]) or by the admin API ([`disconnect`]), with the
//! last words both say per transport ([`last_words`]), TLS ([`tls`]) and the drain
//! ([`drain`]).
//! Each adds an `impl Shard` block over the state defined here, so the child modules
//! import from this one and never the other way round.

mod channel_rate;
mod client_command;
mod disconnect;
mod drain;
mod fanout;
mod frames;
mod handshake;
mod json_framing;
mod last_words;
mod poll;
mod recovery;
mod sse;
mod subscriptions;
mod tls;
mod token_expiry;

use crate::channel_histories::ChannelHistories;
use crate::channel_owner::ChannelOwner;
use crate::close_reason::CloseReason;
use crate::compression::Compression;
use crate::config::ShardConfig;
use crate::conn::{CloseStep, Conn, Phase, Transport};
use crate::conn_slots::ConnSlots;
use crate::conn_table::ConnTable;
use crate::connect_limiter::ConnectLimiter;
use crate::handshake_budget::HandshakeBudget;
use crate::handshake_failure::HandshakeFailure;
use crate::history::Recovery;
use crate::ids::{ChannelName, ConnId};
use crate::local_channels::LocalChannels;
use crate::messages::{BrokerCmd, ShardMsg};
use crate::occupancy::{OwnerCounts, PendingDeltas};
use crate::outbox::Outbox;
use crate::routing::owner_of;
use crate::tick::TickClock;
use crate::timer_wheel::{TimerKind, TimerWheel};
use crate::write_queue::ENTRY_OVERHEAD;
use bytes::Bytes;
use fanout::Delivery;
use last_words::LastWords;
use poll::PollState;
use ringcast_proto::{OpCode, encode_frame, header_len};
use ringcast_telemetry::ShardCounters;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// An unmasked ping with an empty payload: shared by every connection.
const PING_FRAME: &[u8] = &[0x89, 0x00];

/// What the reactor glue must do to a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Arm a multishot recv for this connection.
    ArmRecv(ConnId, i32),
    /// Shut down the write side (send our FIN); keep reading until the peer's.
    ShutdownWrite(i32),
    /// Shut down both sides so the pending recv ends.
    Abort(i32),
    /// Close the descriptor: no operation on it is in flight any more.
    Close(i32),
}

/// Why a multishot recv ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvEnd {
    /// The peer closed its side (recv returned 0).
    Eof,
    /// The provided buffer ring ran dry; the data is still in the socket: re-arm.
    NoBuffers,
    /// The multishot ended without error (the kernel may end it at any time): re-arm.
    Stopped,
    /// The socket failed with this errno.
    Error(i32),
}

/// Drain in progress: close a share of the connections on each tick (see [`drain`]).
struct Drain {
    start_ms: u64,
    spread_ms: u64,
    total: usize,
    issued: usize,
    cursor: u32,
}

/// A long-poll connection waiting for its answer (see [`poll`]).
#[derive(Debug, Clone, Copy)]
struct PollWait {
    generation: u32,
    /// What it waits for.
    state: PollState,
}

/// One shard's connections, channels and timers, as a sans-IO state machine.
///
/// The shard never touches a socket or a clock. The reactor glue (one thread per shard)
/// feeds it events and carries out what it decides; every event takes the shard's clock
/// in milliseconds, which must never go backwards.
///
/// # Calling contract
///
/// Events, as they happen:
/// - [`Shard::on_accept`] for each accepted socket (with the peer's address when
///   [`Shard::needs_peer_address`]); the shard now names it by the returned [`ConnId`].
/// - [`Shard::on_recv`] for each buffer a connection's recv produced, then
///   [`Shard::on_recv_end`] when its multishot recv ends (EOF, error, or stopped).
/// - [`Shard::on_send_done`] when the send started by [`Shard::begin_send`] completes.
/// - [`Shard::on_message`] for each message in the shard's inbox.
/// - [`Shard::on_tick`] at least every [`Shard::ms_until_tick`] milliseconds.
/// - [`Shard::on_accept_error`], [`Shard::on_recv_enobufs`], [`Shard::on_coalesced_waits`]
///   and [`Shard::on_inbox_depth`] for what only the glue sees; [`Shard::flush_metrics`]
///   about once a second.
///
/// After any batch of events, the glue must, in this order:
/// 1. Carry out every [`Shard::take_actions`] item, in order: arm the recv, shut the
///    write side, shut both sides (abort), or close the descriptor. `Close` comes only
///    when no recv or send is in flight, and the fd must not be used after it.
/// 2. Start the sends: every [`Shard::next_answer`], then as many [`Shard::next_send`]
///    as the glue chooses (the rest wait, oldest first). For each, call
///    [`Shard::begin_send`] and submit exactly the slices it hands out, in order, as
///    one vectored send. The slices stay valid, unmoved and unchanged until
///    [`Shard::on_send_done`] for that connection; at most one send per connection is
///    in flight.
/// 3. Deliver [`Shard::outbox`] to the other shards' inboxes (in order per
///    destination) and [`Shard::take_broker_cmds`] to the broker.
///
/// Completions carry the [`ConnId`] they were submitted with; one for a connection that
/// is gone (an older generation of the slot) is ignored, so late completions are safe.
pub struct Shard {
    cfg: ShardConfig,
    conns: ConnTable,
    channels: LocalChannels,
    owned: ChannelOwner,
    /// Local subscriber count changes not yet reported to the channels' owners.
    occupancy: PendingDeltas,
    /// At the owner: counts reported by the shards, on their way into the snapshot.
    owner_counts: OwnerCounts,
    /// Positions and kept messages of the owned channels.
    histories: ChannelHistories,
    /// Connections waiting for the owner's history answer for a channel (how many
    /// requests are out); their deliveries of that channel are skipped meanwhile.
    resuming: HashMap<(ConnId, ChannelName), u16>,
    /// At the owner: resumes waiting for the broker's history, by channel.
    fetching: HashMap<ChannelName, recovery::Reading>,
    wheel: TimerWheel,
    /// Plain per-shard counters, pushed to the metrics registry by `flush_metrics`.
    counters: ShardCounters,
    actions: Vec<Action>,
    /// Connections with frames to send, oldest first ([`Shard::next_send`]).
    ready: VecDeque<ConnId>,
    /// Connections whose first send answers their request ([`Shard::next_answer`]).
    answers: Vec<ConnId>,
    outbox: Outbox,
    broker: Vec<BrokerCmd>,
    fired: Vec<(ConnId, TimerKind)>,
    slow: Vec<ConnId>,
    answered: Vec<ConnId>,
    commands: Vec<Vec<u8>>,
    /// Long-poll connections waiting for a message, by slot.
    polls: HashMap<u32, PollWait>,
    open_by_transport: [usize; 3],
    limiter: ConnectLimiter,
    /// Connection slots held, from accept to the freed slot (`--max-connections`).
    slots: ConnSlots,
    /// This shard's share of the node's handshakes per second.
    budget: HandshakeBudget,
    /// Token refreshes (a signature check each) this shard verifies per second.
    refresh_budget: HandshakeBudget,
    /// Per-address budget of channels polls and event streams make the owners create.
    channel_limiter: ConnectLimiter,
    tick: TickClock,
    compression: Compression,
    /// What connections closed with last words are told, per transport.
    last_words: LastWords,
    drain: Option<Drain>,
    /// The clock of the latest event, for closes decided outside a timed event.
    now_ms: u64,
    /// Times a request head was parsed (see [`Shard::handshake_parses`]).
    handshake_parses: u64,
    /// TLS: the plaintext of one receive (reused).
    tls_plain: Vec<u8>,
    /// TLS: the frames of one send before encryption (reused).
    tls_batch: Vec<u8>,
}

impl Shard {
    /// A shard with no connections.
    pub fn new(mut cfg: ShardConfig) -> Self {
        // A queue must hold at least one whole message (plus its frame header and queue
        // entry), or a single large message would make every receiver a slow consumer.
        let one_message = u32::try_from(cfg.max_message_bytes.saturating_add(14))
            .unwrap_or(u32::MAX)
            .saturating_add(ENTRY_OVERHEAD);
        cfg.max_queue_bytes = cfg.max_queue_bytes.max(one_message);
        let max_delay = cfg
            .ping_interval_ms
            .max(cfg.pong_timeout_ms)
            .max(cfg.handshake_timeout_ms)
            .max(cfg.linger_ms)
            + cfg.tick_ms;
        // Keep the wheel at most ~64k slots whatever the intervals.
        let tick_ms = cfg.tick_ms.max(max_delay / 65_536 + 1);
        let limiter = ConnectLimiter::new(cfg.connect_rate_per_ip);
        let slots = ConnSlots::new(cfg.max_connections, cfg.spare_connections.clone());
        let budget = HandshakeBudget::new(cfg.handshakes_per_sec);
        let channel_limiter = ConnectLimiter::new(cfg.channel_create_rate_per_ip);
        let compression = Compression::new(cfg.compression, cfg.compression_min_bytes);
        // Long-poll rings outlive their last subscriber by two poll timeouts, so a
        // client that re-polls loses nothing still in the ring.
        let linger_ms = cfg.poll_timeout_ms * 2;
        let owned = ChannelOwner::new(linger_ms);
        let owner_counts = OwnerCounts::new(cfg.occupancy.clone());
        let histories = ChannelHistories::new(
            &cfg.history,
            cfg.poll_ring,
            linger_ms,
            !cfg.sees_every_publish,
        );
        let mut counters = ShardCounters::default();
        counters.register_reasons(CloseReason::labels(), HandshakeFailure::labels());
        let transports =
            [Transport::WebSocket, Transport::Sse, Transport::Poll].map(Transport::label);
        counters.register_recoveries(&transports, &Recovery::labels());
        Shard {
            wheel: TimerWheel::new(tick_ms, max_delay),
            outbox: Outbox::new(cfg.id, cfg.shards),
            cfg,
            conns: ConnTable::default(),
            channels: LocalChannels::default(),
            occupancy: PendingDeltas::default(),
            owner_counts,
            owned,
            histories,
            resuming: HashMap::new(),
            fetching: HashMap::new(),
            counters,
            actions: Vec::new(),
            ready: VecDeque::new(),
            answers: Vec::new(),
            broker: Vec::new(),
            fired: Vec::new(),
            slow: Vec::new(),
            answered: Vec::new(),
            commands: Vec::new(),
            polls: HashMap::new(),
            open_by_transport: [0; 3],
            limiter,
            slots,
            budget,
            refresh_budget: HandshakeBudget::new(client_command::REFRESHES_PER_SEC),
            channel_limiter,
            tick: TickClock::default(),
            compression,
            last_words: LastWords::new(),
            drain: None,
            now_ms: 0,
            handshake_parses: 0,
            tls_plain: Vec::new(),
            tls_batch: Vec::new(),
        }
    }

    /// Whether [`Shard::on_accept`] wants the peer's address (a per-IP limit is on).
    pub fn needs_peer_address(&self) -> bool {
        self.limiter.enabled() || self.channel_limiter.enabled()
    }

    /// This shard's id.
    pub fn id(&self) -> u16 {
        self.cfg.id
    }

    /// How many times a request head has been parsed: once per request however it was
    /// split across receives (a work bound for tests).
    pub fn handshake_parses(&self) -> u64 {
        self.handshake_parses
    }

    /// Connections in any phase.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Milliseconds until the timer wheel next needs a tick.
    pub fn ms_until_tick(&self, now_ms: u64) -> u64 {
        self.wheel.ms_until_next(now_ms)
    }

    /// A new socket from `peer` was accepted: the glue must arm its recv (see
    /// [`Shard::take_actions`]). Admission is settled here, before any byte is read: a
    /// socket over the handshake budget or past the connection slots is answered 503 and
    /// closed. The peer address is only needed (and only looked up by
    /// the glue) when [`Shard::needs_peer_address`].
    pub fn on_accept(&mut self, fd: i32, peer: Option<IpAddr>, now_ms: u64) -> ConnId {
        self.now_ms = now_ms;
        let id = self.conns.insert(Conn::new(fd, peer));
        self.counters.accepted += 1;
        self.counters.connections = self.conns.len() as u64;
        self.actions.push(Action::ArmRecv(id, fd));
        self.wheel.schedule(
            now_ms + self.cfg.handshake_timeout_ms,
            id,
            TimerKind::HandshakeDeadline,
        );
        if self.start_tls(id) {
            self.admit_socket(id, peer, now_ms);
        }
        id
    }

    /// Bytes arrived for `id` (the slice may be unmasked, or decrypted, in place).
    pub fn on_recv(&mut self, id: ConnId, data: &mut [u8], now_ms: u64) {
        self.now_ms = now_ms;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.tls().is_some() {
            self.recv_tls(id, data, now_ms);
        } else {
            self.recv_plain(id, data, now_ms);
        }
    }

    /// The connection's plaintext: its request, frames, or (closing) a close reply.
    fn recv_plain(&mut self, id: ConnId, data: &mut [u8], now_ms: u64) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match conn.phase {
            Phase::Handshake => self.recv_handshake(id, data, now_ms),
            Phase::Open if conn.transport == Transport::WebSocket => {
                self.recv_frames(id, data, now_ms)
            }
            // SSE and long-poll clients have nothing more to say after their request.
            Phase::Open => {}
            Phase::Closing { .. } => {
                // Only the peer's close reply or its FIN matter now; keep decoding so
                // a reply is recognised, but send nothing more.
                let (max_message, inflate) = (self.cfg.max_message_bytes, conn.deflate_bits != 0);
                let _ = conn.decoder.feed(data, max_message, inflate, &mut |_| {});
            }
        }
    }

    /// The multishot recv for `id` ended.
    pub fn on_recv_end(&mut self, id: ConnId, end: RecvEnd) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.recv_active = false;
        match end {
            RecvEnd::NoBuffers | RecvEnd::Stopped if !conn.dropping() => {
                conn.recv_active = true;
                self.actions.push(Action::ArmRecv(id, conn.fd));
            }
            RecvEnd::NoBuffers | RecvEnd::Stopped => {}
            RecvEnd::Eof | RecvEnd::Error(_) => {
                let reason = match (conn.phase, end) {
                    (Phase::Handshake, _) => CloseReason::HandshakeAborted,
                    (_, RecvEnd::Eof) => CloseReason::PeerGone,
                    _ => CloseReason::Reset,
                };
                self.abort(id, reason);
            }
        }
        self.progress(id);
    }

    /// The send in flight for `id` completed with `result` (bytes written or errno).
    pub fn on_send_done(&mut self, id: ConnId, result: Result<usize, i32>) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.send_inflight = false;
        match result {
            Ok(written) => {
                match conn.tls_mut() {
                    Some(session) => session.sent(written),
                    None => conn.queue.advance(written),
                }
                self.counters.bytes_sent += written as u64;
            }
            Err(_) => self.abort(id, CloseReason::Reset),
        }
        self.progress(id);
    }

    /// Advances timers and the drain to `now_ms`.
    pub fn on_tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.advance(now_ms, &mut fired);
        for (id, kind) in fired.drain(..) {
            self.on_timer(id, kind, now_ms);
        }
        self.fired = fired;
        self.drain_step(now_ms);
        self.tick_channel(now_ms);
        self.histories.expire(now_ms);
        for cmd in self.owned.expire(now_ms) {
            self.command_broker(cmd);
        }
        self.report_occupancy(now_ms);
    }

    /// A message from another shard or the sidecar.
    pub fn on_message(&mut self, msg: ShardMsg, now_ms: u64) {
        self.now_ms = now_ms;
        match msg {
            ShardMsg::Interest { channel, shard, on } => self.interest(&channel, shard, on),
            ShardMsg::Publish {
                channel,
                payload,
                binary,
                position,
            } => self.publish(channel, &payload, binary, position),
            ShardMsg::HistoryFetched { channel, fetched } => {
                self.history_fetched(&channel, fetched, now_ms)
            }
            ShardMsg::Deliver {
                channel,
                frame,
                deflated,
                payload,
                binary,
                position,
            } => {
                let delivery = Delivery {
                    frame,
                    deflated,
                    payload: &payload,
                    binary,
                    position,
                };
                self.deliver(&channel, delivery);
            }
            ShardMsg::HistoryRequest {
                channel,
                since,
                poll,
                shard,
                conn,
            } => self.history_request(channel, since, poll, shard, conn, now_ms),
            ShardMsg::HistoryReply {
                conn,
                channel,
                recovered,
            } => self.history_reply(conn, &channel, recovered, now_ms),
            ShardMsg::Occupancy { deltas } => self.owner_counts.receive(deltas),
            ShardMsg::Position { channel, report } => {
                report.send(self.histories.last_position(&channel));
            }
            ShardMsg::Drain { spread_ms } => self.start_drain(spread_ms, now_ms),
            ShardMsg::Disconnect { target, report } => {
                report.send(self.disconnect(&target, now_ms));
            }
        }
    }

    /// A failed accept (counted; the glue decides whether to back off).
    pub fn on_accept_error(&mut self) {
        self.counters.accept_errors += 1;
    }

    /// A recv found the buffer ring empty (counted; the recv ends with
    /// [`RecvEnd::NoBuffers`]).
    pub fn on_recv_enobufs(&mut self) {
        self.counters.recv_enobufs += 1;
    }

    /// The reactor's count of waits that let completions gather, since it started.
    pub fn on_coalesced_waits(&mut self, total: u64) {
        self.counters.coalesced_waits = total;
    }

    /// The shard's inbox holds `messages` messages (a gauge).
    pub fn on_inbox_depth(&mut self, messages: usize) {
        self.counters.queue_depth = messages as u64;
    }

    /// Socket actions decided since the last call.
    pub fn take_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// Messages for other shards, by destination shard id.
    pub fn outbox(&mut self) -> &mut [Vec<ShardMsg>] {
        self.outbox.queues()
    }

    /// Subscribe/unsubscribe commands for the broker since the last call.
    pub fn take_broker_cmds(&mut self) -> std::vec::Drain<'_, BrokerCmd> {
        self.broker.drain(..)
    }

    /// The next connection whose queue starts with the answer to its request (a 101,
    /// an event stream's head, a TLS handshake flight), with its fd. The glue starts
    /// all of these every batch: an answer has no earlier send to be staggered against
    /// (its send also carries whatever was queued behind it), and a connection that
    /// waits for one keeps its request's state alive meanwhile.
    pub fn next_answer(&mut self) -> Option<(ConnId, i32)> {
        while let Some(id) = self.answers.pop() {
            if let Some(sendable) = self.sendable(id) {
                return Some(sendable);
            }
        }
        None
    }

    /// The next connection with queued frames and no send in flight, with its fd:
    /// answers first (see [`Shard::next_answer`]), then the one that has waited longest.
    pub fn next_send(&mut self) -> Option<(ConnId, i32)> {
        if let Some(answer) = self.next_answer() {
            return Some(answer);
        }
        while let Some(id) = self.ready.pop_front() {
            if let Some(sendable) = self.sendable(id) {
                return Some(sendable);
            }
        }
        None
    }

    /// Takes `id` off the ready lists; its fd when it should send now.
    fn sendable(&mut self, id: ConnId) -> Option<(ConnId, i32)> {
        let conn = self.conns.get_mut(id)?;
        conn.in_ready = false;
        (!conn.send_inflight && conn.wants_send() && !conn.dropping()).then_some((id, conn.fd))
    }

    /// Connections waiting for [`Shard::next_answer`] or [`Shard::next_send`] (some may
    /// have closed or been sent to meanwhile; those are skipped).
    pub fn sends_waiting(&self) -> usize {
        self.ready.len() + self.answers.len()
    }

    /// Starts the send for `id`: calls `chunk` with each queued slice (valid until
    /// [`Shard::on_send_done`] for this connection) and marks the send in flight. On
    /// TLS it is one slice of ciphertext.
    pub fn begin_send(&mut self, id: ConnId, chunk: &mut dyn FnMut(&[u8])) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.send_inflight = true;
        let encrypted = match conn.tls_and_queue() {
            (None, queue) => {
                queue.begin_send(&mut *chunk);
                true
            }
            (Some(session), queue) => tls::send_batch(session, queue, &mut self.tls_batch, chunk),
        };
        if !encrypted {
            self.abort(id, CloseReason::TlsError);
            self.progress(id);
        }
    }

    /// Frames queued on shard connections, in bytes (for tests and gauges).
    pub fn queued_bytes(&mut self, id: ConnId) -> Option<u32> {
        self.conns.get_mut(id).map(|c| c.queue.queued_bytes())
    }

    /// The shard's counters as of now (gauges as of [`Shard::refresh_gauges`]).
    pub fn counters(&self) -> &ShardCounters {
        &self.counters
    }

    /// Refreshes the gauges in the counters from the shard's state.
    pub fn refresh_gauges(&mut self) {
        self.counters.connections = self.conns.len() as u64;
        self.counters.sse_connections = self.open_by_transport[Transport::Sse as usize] as u64;
        self.counters.poll_connections = self.open_by_transport[Transport::Poll as usize] as u64;
        self.counters.channels = self.owned.len() as u64;
        self.counters.subscriptions = self.channels.subscriptions();
        let (messages, bytes, evictions) = self.histories.gauges();
        self.counters.history_messages = messages as u64;
        self.counters.history_bytes = bytes as u64;
        self.counters.history_evictions = evictions;
    }

    /// Refreshes the gauges and pushes the counters into the metrics registry, labelled
    /// with this shard's id.
    pub fn flush_metrics(&mut self) {
        self.refresh_gauges();
        self.counters.flush(usize::from(self.cfg.id));
    }

    /// Hands a command to the broker. Where the node hears a channel only while it is
    /// subscribed, unsubscribing ends what its history can vouch for.
    fn command_broker(&mut self, cmd: BrokerCmd) {
        if !self.cfg.sees_every_publish
            && let BrokerCmd::Unsubscribe(channel) = &cmd
        {
            self.histories.forget(channel);
        }
        self.broker.push(cmd);
    }

    /// The shard that owns `channel`.
    fn owner(&self, channel: &str) -> u16 {
        // Below `shards`, which is a u16.
        owner_of(channel, usize::from(self.cfg.shards)) as u16
    }

    /// Sends `msg` to shard `to`, or handles it at once when `to` is this shard.
    fn route(&mut self, to: u16, msg: ShardMsg) {
        if let Some(msg) = self.outbox.route(to, msg) {
            self.on_message(msg, self.now_ms);
        }
    }

    /// Marks a connection open on `transport` once its request is admitted.
    fn open_as(&mut self, id: ConnId, transport: Transport) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.clear_head();
            conn.phase = Phase::Open;
            conn.transport = transport;
            self.open_by_transport[transport as usize] += 1;
        }
    }

    /// Queues a close frame with `payload` and closes for `reason` after the flush.
    fn close_with(&mut self, id: ConnId, reason: CloseReason, payload: &[u8], now_ms: u64) {
        if let Some(conn) = self.conns.get_mut(id)
            && conn.transport == Transport::WebSocket
        {
            conn.queue.push_close(encoded(OpCode::Close, payload));
        }
        self.begin_close(id, reason, now_ms);
    }

    /// Starts a graceful close for `reason`: what is queued goes out, then our FIN, then
    /// the slot is freed at the peer's FIN or after the linger.
    fn begin_close(&mut self, id: ConnId, reason: CloseReason, now_ms: u64) {
        if !self.enter_closing(id, reason, CloseStep::Flushing) {
            return;
        }
        self.wheel
            .schedule(now_ms + self.cfg.linger_ms, id, TimerKind::Linger);
        self.progress(id);
    }

    /// Drops the connection without a close frame (dead peer, timeout, drain during the
    /// handshake); the caller moves it along with [`Shard::progress`].
    fn abort(&mut self, id: ConnId, reason: CloseReason) {
        self.enter_closing(id, reason, CloseStep::Dropping { aborted: false });
    }

    /// Moves `id` to the close `step`, leaving the open state first. The reason is
    /// counted when the connection first starts closing; a later reason is ignored, and
    /// a connection already closing only ever moves on to dropping. False when `id` is
    /// gone.
    fn enter_closing(&mut self, id: ConnId, reason: CloseReason, step: CloseStep) -> bool {
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        match &mut conn.phase {
            Phase::Closing { step: current, .. } => {
                if matches!(step, CloseStep::Dropping { .. })
                    && !matches!(current, CloseStep::Dropping { .. })
                {
                    *current = step;
                }
                return true;
            }
            Phase::Open => self.leave_open(id),
            Phase::Handshake => {}
        }
        self.counters.closed(reason.label());
        if let Some(conn) = self.conns.get_mut(id) {
            conn.phase = Phase::Closing { reason, step };
        }
        true
    }

    /// An open connection starts closing: it no longer counts as open, holds no
    /// subscription and no pending poll.
    fn leave_open(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id) {
            self.open_by_transport[conn.transport as usize] -= 1;
        }
        self.polls.remove(&id.idx);
        self.unsubscribe_all(id);
    }

    /// Moves a connection along after any change: schedule its send, take the next close
    /// step, or free its slot when it is dropping and nothing is in flight any more.
    fn progress(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let flushed = !conn.send_inflight && !conn.wants_send();
        let flushing = matches!(
            conn.phase,
            Phase::Closing {
                step: CloseStep::Flushing,
                ..
            }
        );
        // A TLS connection says close_notify before its FIN.
        if flushed && flushing && self.tls_close_notify(id) {
            return;
        }
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match &mut conn.phase {
            Phase::Closing {
                step: CloseStep::Dropping { aborted },
                ..
            } => {
                if !conn.send_inflight && !conn.recv_active {
                    self.free(id);
                } else if !*aborted {
                    *aborted = true;
                    self.actions.push(Action::Abort(conn.fd));
                }
            }
            _ if !flushed => self.mark_ready(id),
            Phase::Closing { step, .. } if *step == CloseStep::Flushing => {
                self.actions.push(Action::ShutdownWrite(conn.fd));
                *step = if conn.recv_active {
                    CloseStep::WriteShut
                } else {
                    CloseStep::Dropping { aborted: false }
                };
                if !conn.recv_active {
                    self.progress(id);
                }
            }
            _ => {}
        }
    }

    /// Frees a dropped connection's slot and tells the glue to close its descriptor.
    fn free(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.remove(id) {
            if conn.holds_slot {
                self.slots.release();
            }
            self.actions.push(Action::Close(conn.fd));
        }
        self.counters.connections = self.conns.len() as u64;
    }

    fn mark_ready(&mut self, id: ConnId) {
        if self.joins_ready_list(id) {
            self.ready.push_back(id);
        }
    }

    /// [`Shard::mark_ready`] for the answer to a connection's request: it is sent in the
    /// next batch, not in its turn (see [`Shard::next_answer`]).
    fn mark_answer_ready(&mut self, id: ConnId) {
        if self.joins_ready_list(id) {
            self.answers.push(id);
        }
    }

    /// Whether `id` has something to send and is in no ready list yet (then it is now).
    fn joins_ready_list(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        let joins = !conn.in_ready && !conn.send_inflight && conn.wants_send();
        conn.in_ready |= joins;
        joins
    }

    fn on_timer(&mut self, id: ConnId, kind: TimerKind, now_ms: u64) {
        let deadline_arms_ping = self.first_ping_waits_for_deadline();
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match (kind, conn.phase) {
            (TimerKind::HandshakeDeadline, Phase::Handshake) => {
                self.abort(id, CloseReason::HandshakeTimeout);
                self.progress(id);
            }
            (TimerKind::HandshakeDeadline, Phase::Open)
                if conn.transport != Transport::Poll && deadline_arms_ping =>
            {
                // The deadline's entry is the one that arms the first ping (see
                // `schedule_first_ping`).
                let at = now_ms + self.ping_offset(id);
                self.wheel.schedule(at, id, TimerKind::Ping);
            }
            (TimerKind::Ping, Phase::Open) if conn.transport == Transport::Sse => {
                self.sse_keepalive(id, now_ms);
            }
            (TimerKind::PollDeadline, Phase::Open) => self.poll_deadline(id, now_ms),
            (TimerKind::Ping, Phase::Open) => {
                if conn.ping_sent(now_ms) {
                    conn.queue.push_control(Bytes::from_static(PING_FRAME));
                    self.counters.pings_sent += 1;
                    self.wheel.schedule(
                        now_ms + self.cfg.pong_timeout_ms,
                        id,
                        TimerKind::PongDeadline,
                    );
                    self.mark_ready(id);
                }
                self.wheel
                    .schedule(now_ms + self.cfg.ping_interval_ms, id, TimerKind::Ping);
            }
            (TimerKind::PongDeadline, Phase::Open)
                if conn
                    .ping_age_ms(now_ms)
                    .is_some_and(|age| age >= self.cfg.pong_timeout_ms) =>
            {
                self.counters.ping_timeouts += 1;
                self.abort(id, CloseReason::PingTimeout);
                self.progress(id);
            }
            (TimerKind::TokenExpiry, Phase::Open) => self.token_expiry_timer(id, now_ms),
            (TimerKind::Linger, Phase::Closing { reason, .. }) => {
                self.abort(id, reason);
                self.progress(id);
            }
            _ => {}
        }
    }

    /// First ping of a connection: a pseudo-random point in the interval so pings of
    /// connections accepted together still spread evenly.
    fn ping_offset(&self, id: ConnId) -> u64 {
        let mut x = u64::from(id.idx) << 24 | u64::from(id.generation);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        1 + x % self.cfg.ping_interval_ms.max(1)
    }

    /// Whether a new connection's first ping is armed by its handshake deadline's timer
    /// rather than by a timer of its own: when the ping interval is longer than the
    /// handshake timeout (the defaults: 30 s and 10 s), so that an open connection keeps
    /// one timer entry, not two, while its stale deadline waits to fire. Its first ping
    /// then comes at a pseudo-random point of the interval that follows the deadline, so
    /// the pings of connections accepted together spread over the whole interval, as
    /// with a timer armed at the upgrade, one handshake timeout later.
    fn first_ping_waits_for_deadline(&self) -> bool {
        self.cfg.ping_interval_ms > self.cfg.handshake_timeout_ms
    }

    /// Schedules the first ping (or SSE keep-alive) of a newly open connection, unless
    /// its handshake deadline will (see `first_ping_waits_for_deadline`).
    fn schedule_first_ping(&mut self, id: ConnId, now_ms: u64) {
        if self.first_ping_waits_for_deadline() {
            return;
        }
        let offset = self.ping_offset(id);
        self.wheel.schedule(now_ms + offset, id, TimerKind::Ping);
    }
}

/// One unmasked FIN frame in a fresh shared buffer of exactly its size: `Bytes` takes over
/// a full `Vec` as is, whereas spare capacity would cost a second allocation for a shared
/// header and an atomic count on drop (per echo, per pong).
fn encoded(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(header_len(payload.len(), false) + payload.len());
    encode_frame(&mut out, opcode, payload, None);
    debug_assert_eq!(out.len(), out.capacity());
    Bytes::from(out)
}
