//! The shard state machine: connection lifecycle (handshake, frames, pings, close),
//! subscriptions and owner routing, fan-out of shared frames, and drain. Events come in
//! through the `on_*` methods with the shard's clock in milliseconds; actions for the
//! reactor, sends to start and messages for other shards and the broker come out.

use crate::admission::{Admitted, Target, admit, admit_plain};
use crate::channel_owner::ChannelOwner;
use crate::compression::{Compression, FANOUT_WINDOW_BITS};
use crate::config::{ShardConfig, SlowConsumer};
use crate::conn::Transport;
use crate::conn::{Conn, Phase};
use crate::conn_table::{ConnId, ConnTable};
use crate::connect_limiter::ConnectLimiter;
use crate::local_channels::{LocalChannels, Membership};
use crate::messages::{BrokerCmd, ChannelName, ShardMsg};
use crate::poll_ring::Kept;
use crate::routing::owner_of;
use crate::tick::TickClock;
use crate::timer_wheel::{TimerKind, TimerWheel};
use base64::Engine;
use bytes::Bytes;
use ringcast_proto::{
    HandshakeError, HandshakeStatus, Message, OpCode, PlainGet, PlainRoute, Upgrade, close_payload,
    code, encode_frame, http_error_response, parse_plain_get, parse_upgrade,
};
use ringcast_telemetry::ShardCounters;
use std::collections::HashMap;
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

/// Drain in progress: close a share of the connections on each tick.
struct Drain {
    start_ms: u64,
    spread_ms: u64,
    total: usize,
    issued: usize,
    cursor: u32,
}

/// One shard's connections, channels and timers.
pub struct Shard {
    cfg: ShardConfig,
    conns: ConnTable,
    channels: LocalChannels,
    owned: ChannelOwner,
    wheel: TimerWheel,
    /// Plain per-shard counters, flushed by the glue about once a second.
    pub counters: ShardCounters,
    open: usize,
    actions: Vec<Action>,
    ready: Vec<ConnId>,
    outbox: Vec<Vec<ShardMsg>>,
    broker: Vec<BrokerCmd>,
    fired: Vec<(ConnId, TimerKind)>,
    slow: Vec<ConnId>,
    answered: Vec<ConnId>,
    commands: Vec<Vec<u8>>,
    /// Long-poll connections waiting for a message, by slot.
    polls: HashMap<u32, PollWait>,
    open_by_transport: [usize; 3],
    limiter: ConnectLimiter,
    tick: TickClock,
    compression: Compression,
    drain: Option<Drain>,
    /// The clock of the latest event, for closes decided outside a timed event.
    now_ms: u64,
}

impl Shard {
    /// A shard with no connections.
    pub fn new(mut cfg: ShardConfig) -> Self {
        // A queue must hold at least one whole message (plus its frame header), or a
        // single large message would make every receiver a slow consumer.
        let one_message =
            u32::try_from(cfg.max_message_bytes.saturating_add(14)).unwrap_or(u32::MAX);
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
        let compression = Compression::new(cfg.compression, cfg.compression_min_bytes);
        // Long-poll rings outlive their last subscriber by two poll timeouts, so a
        // client that re-polls loses nothing still in the ring.
        let owned = ChannelOwner::new(cfg.poll_ring, cfg.poll_timeout_ms * 2);
        Shard {
            wheel: TimerWheel::new(tick_ms, max_delay),
            outbox: (0..cfg.shards).map(|_| Vec::new()).collect(),
            cfg,
            conns: ConnTable::default(),
            channels: LocalChannels::default(),
            owned,
            counters: ShardCounters::default(),
            open: 0,
            actions: Vec::new(),
            ready: Vec::new(),
            broker: Vec::new(),
            fired: Vec::new(),
            slow: Vec::new(),
            answered: Vec::new(),
            commands: Vec::new(),
            polls: HashMap::new(),
            open_by_transport: [0; 3],
            limiter,
            tick: TickClock::default(),
            compression,
            drain: None,
            now_ms: 0,
        }
    }

    /// Whether [`Shard::on_accept`] wants the peer's address (a per-IP limit is on).
    pub fn needs_peer_address(&self) -> bool {
        self.limiter.enabled()
    }

    /// This shard's id.
    pub fn id(&self) -> u16 {
        self.cfg.id
    }

    /// Connections in any phase.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Whether a drain was started and every connection is gone.
    pub fn drained(&self) -> bool {
        self.drain.is_some() && self.conns.is_empty()
    }

    /// Whether a drain was started.
    pub fn draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Milliseconds until the timer wheel next needs a tick.
    pub fn ms_until_tick(&self, now_ms: u64) -> u64 {
        self.wheel.ms_until_next(now_ms)
    }

    /// A new socket from `peer` was accepted: the glue must arm its recv (see
    /// [`Shard::take_actions`]). The peer address is only needed (and only looked up by
    /// the glue) when [`Shard::needs_peer_address`].
    pub fn on_accept(&mut self, fd: i32, peer: Option<IpAddr>, now_ms: u64) -> ConnId {
        self.now_ms = now_ms;
        let id = self.conns.insert(Conn::new(fd, self.cfg.max_message_bytes));
        self.counters.accepted += 1;
        self.counters.connections = self.conns.len() as u64;
        self.actions.push(Action::ArmRecv(id, fd));
        self.wheel.schedule(
            now_ms + self.cfg.handshake_timeout_ms,
            id,
            TimerKind::HandshakeDeadline,
        );
        if self.drain.is_some() {
            self.abort(id, "shutdown");
            self.progress(id);
        } else if let Some(ip) = peer
            && !self.limiter.allow(ip, now_ms)
        {
            // Answer right away: no need to read the request of a client over its rate.
            self.counters.handshake_failed("rate_limited");
            let response = http_error_response(429, "Too Many Requests", "slow down\n");
            self.fail_handshake(id, response, now_ms);
        }
        id
    }

    /// Bytes arrived for `id` (the slice may be unmasked in place).
    pub fn on_recv(&mut self, id: ConnId, data: &mut [u8], now_ms: u64) {
        self.now_ms = now_ms;
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
            Phase::Closing => {
                // Only the peer's close reply or its FIN matter now; keep decoding so
                // a reply is recognised, but send nothing more.
                let _ = conn.decoder.feed(data, &mut |_| {});
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
            RecvEnd::NoBuffers | RecvEnd::Stopped if !conn.gone => {
                conn.recv_active = true;
                self.actions.push(Action::ArmRecv(id, conn.fd));
            }
            RecvEnd::NoBuffers | RecvEnd::Stopped => {}
            RecvEnd::Eof | RecvEnd::Error(_) => {
                let reason = match (conn.phase, end) {
                    (Phase::Handshake, _) => "handshake_aborted",
                    (_, RecvEnd::Eof) => "peer_gone",
                    _ => "reset",
                };
                conn.gone = true;
                self.decide_reason(id, reason);
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
                conn.queue.advance(written);
                self.counters.bytes_sent += written as u64;
            }
            Err(_) => {
                conn.gone = true;
                self.decide_reason(id, "reset");
            }
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
        let expired = self.owned.expire(now_ms);
        self.broker.extend(expired);
    }

    /// Publishes the time to local subscribers of the tick channel once a second.
    fn tick_channel(&mut self, now_ms: u64) {
        let Some(name) = &self.cfg.tick_channel else {
            return;
        };
        let Some(text) = self.tick.due(self.cfg.unix_ms_at_zero + now_ms) else {
            return;
        };
        if self.channels.slot_of(name).is_some() {
            let name = name.clone();
            let payload = Bytes::from(text);
            let frame = encoded(OpCode::Text, &payload);
            let seq = self.cfg.unix_ms_at_zero.saturating_add(now_ms) / 1000;
            self.deliver(&name, frame, None, &payload, false, seq);
        }
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
            } => self.publish(channel, &payload, binary),
            ShardMsg::Deliver {
                channel,
                frame,
                deflated,
                payload,
                binary,
                seq,
            } => self.deliver(&channel, frame, deflated, &payload, binary, seq),
            ShardMsg::PollRequest {
                channel,
                since,
                shard,
                conn,
            } => {
                let (messages, last_seq) = self.owned.poll(&channel, since, now_ms);
                let reply = ShardMsg::PollReply {
                    conn,
                    messages,
                    last_seq,
                };
                if shard == self.cfg.id {
                    self.on_message(reply, now_ms);
                } else if let Some(out) = self.outbox.get_mut(usize::from(shard)) {
                    out.push(reply);
                }
            }
            ShardMsg::PollReply {
                conn,
                messages,
                last_seq,
            } => self.poll_reply(conn, &messages, last_seq, now_ms),
            ShardMsg::Drain { spread_ms } => self.start_drain(spread_ms, now_ms),
        }
    }

    fn poll_reply(&mut self, id: ConnId, messages: &[Kept], last_seq: u64, now_ms: u64) {
        let Some(wait) = self.polls.get_mut(&id.idx) else {
            return;
        };
        if wait.generation != id.generation {
            return;
        }
        match wait.since {
            Some(since) => {
                let fresh: Vec<Kept> = messages.iter().filter(|k| k.seq > since).cloned().collect();
                if !fresh.is_empty() {
                    self.answer_poll(id, &fresh, last_seq, now_ms);
                }
            }
            // A first poll waits for messages after the current last one.
            None => wait.since = Some(last_seq),
        }
    }

    /// Socket actions decided since the last call.
    pub fn take_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// Messages for other shards, by destination shard id.
    pub fn outbox(&mut self) -> &mut [Vec<ShardMsg>] {
        &mut self.outbox
    }

    /// Subscribe/unsubscribe commands for the broker since the last call.
    pub fn take_broker_cmds(&mut self) -> std::vec::Drain<'_, BrokerCmd> {
        self.broker.drain(..)
    }

    /// The next connection with queued frames and no send in flight, with its fd.
    pub fn next_send(&mut self) -> Option<(ConnId, i32)> {
        while let Some(id) = self.ready.pop() {
            if let Some(conn) = self.conns.get_mut(id) {
                conn.in_ready = false;
                if !conn.send_inflight && !conn.queue.is_empty() && !conn.aborted {
                    return Some((id, conn.fd));
                }
            }
        }
        None
    }

    /// Starts the send for `id`: calls `chunk` with each queued slice (valid until
    /// [`Shard::on_send_done`] for this connection) and marks the send in flight.
    pub fn begin_send(&mut self, id: ConnId, chunk: &mut dyn FnMut(&[u8])) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.queue.begin_send(&mut *chunk);
            conn.send_inflight = true;
        }
    }

    /// Frames queued on shard connections, in bytes (for tests and gauges).
    pub fn queued_bytes(&mut self, id: ConnId) -> Option<u32> {
        self.conns.get_mut(id).map(|c| c.queue.queued_bytes())
    }

    /// Refreshes the gauges in `counters` from the shard's state.
    pub fn refresh_gauges(&mut self) {
        self.counters.connections = self.conns.len() as u64;
        self.counters.sse_connections = self.open_by_transport[Transport::Sse as usize] as u64;
        self.counters.poll_connections = self.open_by_transport[Transport::Poll as usize] as u64;
        self.counters.channels = self.owned.len() as u64;
        self.counters.subscriptions = self.channels.subscriptions();
    }

    fn recv_handshake(&mut self, id: ConnId, data: &[u8], now_ms: u64) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.handshake.extend_from_slice(data);
        match parse_upgrade(&conn.handshake) {
            Ok(HandshakeStatus::Partial) => {}
            Ok(HandshakeStatus::Done(upgrade)) => self.start_websocket(id, upgrade, now_ms),
            Err(HandshakeError::NotUpgrade) => match parse_plain_get(&conn.handshake) {
                Ok(Some(get)) => self.start_plain(id, get, now_ms),
                Ok(None) => self.refuse(id, HandshakeError::NotUpgrade, now_ms),
                Err(err) => self.refuse(id, err, now_ms),
            },
            Err(err) => self.refuse(id, err, now_ms),
        }
    }

    fn refuse(&mut self, id: ConnId, err: HandshakeError, now_ms: u64) {
        self.counters.handshake_failed(err.label());
        self.fail_handshake(id, err.response(), now_ms);
    }

    /// Answers 503 and returns true when the node is full or draining.
    fn refuse_if_full(&mut self, id: ConnId, now_ms: u64) -> bool {
        if self.open < self.cfg.max_connections && self.drain.is_none() {
            return false;
        }
        self.counters.handshake_failed("server_full");
        let response = http_error_response(503, "Service Unavailable", "server full\n");
        self.fail_handshake(id, response, now_ms);
        true
    }

    /// Marks a connection open on `transport` once its request is admitted.
    fn open_as(&mut self, id: ConnId, transport: Transport) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.handshake = Vec::new();
            conn.phase = Phase::Open;
            conn.transport = transport;
            self.open += 1;
            self.open_by_transport[transport as usize] += 1;
        }
    }

    fn start_websocket(&mut self, id: ConnId, upgrade: Upgrade, now_ms: u64) {
        if self.refuse_if_full(id, now_ms) {
            return;
        }
        let Admitted {
            target,
            response,
            deflate,
        } = match admit(&self.cfg, &upgrade, now_ms) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                self.counters.handshake_failed(refusal.label);
                self.fail_handshake(id, refusal.response(), now_ms);
                return;
            }
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let mut rest = conn.handshake.split_off(upgrade.consumed);
        conn.queue.push_control(Bytes::from(response));
        if let Some(params) = deflate {
            conn.deflate_bits = params.server_max_window_bits;
            conn.decoder.enable_deflate();
        }
        self.open_as(id, Transport::WebSocket);
        match target {
            Target::Echo => {
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.echo = true;
                }
            }
            Target::Channels(names) => {
                for name in names {
                    self.subscribe(id, &name);
                }
            }
        }
        let offset = self.ping_offset(id);
        self.wheel.schedule(now_ms + offset, id, TimerKind::Ping);
        self.mark_ready(id);
        if !rest.is_empty() {
            self.recv_frames(id, &mut rest, now_ms);
        }
    }

    /// `GET /sse/<channel>` or `GET /poll/<channel>?since=<id>`.
    fn start_plain(&mut self, id: ConnId, get: PlainGet, now_ms: u64) {
        if self.refuse_if_full(id, now_ms) {
            return;
        }
        if let Err(refusal) = admit_plain(&self.cfg, &get, now_ms) {
            self.counters.handshake_failed(refusal.label);
            self.fail_handshake(id, refusal.response(), now_ms);
            return;
        }
        let since = get.query_param("since").map(str::parse::<u64>);
        match get.route {
            PlainRoute::Sse(channel) => {
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.queue.push_control(Bytes::from_static(SSE_HEAD));
                }
                self.open_as(id, Transport::Sse);
                self.subscribe(id, &channel);
                let offset = self.ping_offset(id);
                self.wheel.schedule(now_ms + offset, id, TimerKind::Ping);
                self.mark_ready(id);
            }
            PlainRoute::Poll(channel) => {
                let since = match since {
                    None => None,
                    Some(Ok(since)) => Some(since),
                    Some(Err(_)) => {
                        self.counters.handshake_failed("bad_since");
                        let response =
                            http_error_response(400, "Bad Request", "since must be a number\n");
                        self.fail_handshake(id, response, now_ms);
                        return;
                    }
                };
                self.open_as(id, Transport::Poll);
                self.subscribe(id, &channel);
                self.polls.insert(
                    id.idx,
                    PollWait {
                        generation: id.generation,
                        since,
                    },
                );
                self.wheel.schedule(
                    now_ms + self.cfg.poll_timeout_ms,
                    id,
                    TimerKind::PollDeadline,
                );
                let channel: ChannelName = channel.into();
                let owner = owner_of(&channel, usize::from(self.cfg.shards));
                let request = ShardMsg::PollRequest {
                    channel,
                    since,
                    shard: self.cfg.id,
                    conn: id,
                };
                if owner == usize::from(self.cfg.id) {
                    self.on_message(request, now_ms);
                } else {
                    self.outbox[owner].push(request);
                }
            }
        }
    }

    /// Answers a long-poll connection with `messages` (200, or 204 when empty) and
    /// closes it.
    fn answer_poll(&mut self, id: ConnId, messages: &[Kept], last_seq: u64, now_ms: u64) {
        let reason = if messages.is_empty() {
            "poll_timeout"
        } else {
            "poll_done"
        };
        self.decide_reason(id, reason);
        let response = poll_response(messages, last_seq);
        self.leave_open(id);
        if let Some(conn) = self.conns.get_mut(id) {
            conn.phase = Phase::Closing;
            conn.queue.push_control(Bytes::from(response));
        }
        self.begin_close(id, now_ms);
    }

    fn fail_handshake(&mut self, id: ConnId, response: Vec<u8>, now_ms: u64) {
        self.decide_reason(id, "handshake_failed");
        if let Some(conn) = self.conns.get_mut(id) {
            conn.handshake = Vec::new();
            conn.queue.push_control(Bytes::from(response));
        }
        self.begin_close(id, now_ms);
    }

    fn recv_frames(&mut self, id: ConnId, data: &mut [u8], now_ms: u64) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let echo = conn.echo;
        let bits = conn.deflate_bits;
        let commands = self.cfg.client_commands && !echo;
        let queue = &mut conn.queue;
        let compression = &mut self.compression;
        let mut echo_frame = |opcode: OpCode, payload: &[u8]| {
            let compressed = if bits == 0 {
                None
            } else {
                compression.frame(opcode, payload, bits)
            };
            compressed.unwrap_or_else(|| encoded(opcode, payload))
        };
        let mut received = std::mem::take(&mut self.commands);
        let mut pong = false;
        let mut peer_close: Option<Option<u16>> = None;
        let result = conn.decoder.feed(data, &mut |msg| match msg {
            Message::Text(p) if echo => queue.push_data(echo_frame(OpCode::Text, p)),
            Message::Binary(p) if echo => queue.push_data(echo_frame(OpCode::Binary, p)),
            Message::Text(p) if commands => received.push(p.to_vec()),
            Message::Text(_) | Message::Binary(_) => {}
            Message::Ping(p) => queue.push_control(encoded(OpCode::Pong, p)),
            Message::Pong(_) => pong = true,
            Message::Close(frame) => peer_close = Some(frame.map(|f| f.code)),
        });
        for command in received.drain(..) {
            let reply = self.client_command(id, &command);
            if let Some(conn) = self.conns.get_mut(id) {
                conn.queue
                    .push_data(encoded(OpCode::Text, reply.as_bytes()));
            }
        }
        self.commands = received;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if pong && conn.ping_sent_ms != 0 {
            let rtt_ms = now_ms.saturating_sub(conn.ping_sent_ms);
            conn.ping_sent_ms = 0;
            self.counters.pongs_received += 1;
            self.counters.ping_rtt(rtt_ms as f64 / 1000.0);
        } else if pong {
            self.counters.pongs_received += 1;
        }
        match (result, peer_close) {
            (Err(err), _) => {
                let frame = close_payload(err.close_code(), err.label());
                self.close_with(id, err.label(), &frame, now_ms);
            }
            (Ok(()), Some(code)) => {
                let frame = code.map_or_else(Vec::new, |c| close_payload(c, ""));
                // The client asked to close: what was queued before its close frame
                // (echoes, messages) still goes out, then our close reply.
                self.decide_reason(id, "client_close");
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.queue.push_final(encoded(OpCode::Close, &frame));
                }
                self.begin_close(id, now_ms);
            }
            (Ok(()), None) if conn.queue.queued_bytes() > self.cfg.max_queue_bytes => {
                // Echoes and pongs of a client that sends but does not read.
                self.counters.slow_consumer_closes += 1;
                let payload = close_payload(code::POLICY, "slow consumer");
                self.close_with(id, "slow_consumer", &payload, now_ms);
            }
            (Ok(()), None) => self.mark_ready(id),
        }
    }

    /// Queues a close frame with `payload`, records `reason`, and closes after the flush.
    fn close_with(&mut self, id: ConnId, reason: &'static str, payload: &[u8], now_ms: u64) {
        self.decide_reason(id, reason);
        if let Some(conn) = self.conns.get_mut(id)
            && conn.transport == Transport::WebSocket
        {
            conn.queue.push_close(encoded(OpCode::Close, payload));
        }
        self.begin_close(id, now_ms);
    }

    fn begin_close(&mut self, id: ConnId, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.phase == Phase::Open {
            self.leave_open(id);
        }
        if let Some(conn) = self.conns.get_mut(id) {
            conn.phase = Phase::Closing;
        }
        self.wheel
            .schedule(now_ms + self.cfg.linger_ms, id, TimerKind::Linger);
        self.progress(id);
    }

    /// Drops the connection without a close frame (dead peer, handshake timeout).
    fn abort(&mut self, id: ConnId, reason: &'static str) {
        self.decide_reason(id, reason);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.phase == Phase::Open {
            self.leave_open(id);
        }
        if let Some(conn) = self.conns.get_mut(id) {
            conn.phase = Phase::Closing;
            conn.gone = true;
        }
    }

    /// An open connection starts closing: it no longer counts as open, holds no
    /// subscription and no pending poll.
    fn leave_open(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id) {
            self.open -= 1;
            self.open_by_transport[conn.transport as usize] -= 1;
        }
        self.polls.remove(&id.idx);
        self.unsubscribe_all(id);
    }

    fn decide_reason(&mut self, id: ConnId, reason: &'static str) {
        if let Some(conn) = self.conns.get_mut(id)
            && conn.reason.is_none()
        {
            conn.reason = Some(reason);
            self.counters.closed(reason);
        }
    }

    /// Moves a connection along after any change: schedule its send, finish a close,
    /// or free its slot when nothing is in flight any more.
    fn progress(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.send_inflight {
            if conn.gone && !conn.aborted {
                conn.aborted = true;
                self.actions.push(Action::Abort(conn.fd));
            }
            return;
        }
        if conn.gone {
            if conn.recv_active {
                if !conn.aborted {
                    conn.aborted = true;
                    self.actions.push(Action::Abort(conn.fd));
                }
                return;
            }
            self.free(id);
            return;
        }
        if !conn.queue.is_empty() {
            self.mark_ready(id);
            return;
        }
        if conn.phase == Phase::Closing && !conn.wr_shut {
            conn.wr_shut = true;
            self.actions.push(Action::ShutdownWrite(conn.fd));
            if !conn.recv_active {
                conn.gone = true;
                self.progress(id);
            }
        }
    }

    fn free(&mut self, id: ConnId) {
        if self
            .conns
            .get_mut(id)
            .is_some_and(|c| c.phase == Phase::Open)
        {
            self.leave_open(id);
        }
        if let Some(conn) = self.conns.remove(id) {
            self.actions.push(Action::Close(conn.fd));
            if conn.reason.is_none() {
                self.counters.closed("unknown");
            }
        }
        self.counters.connections = self.conns.len() as u64;
    }

    fn mark_ready(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id)
            && !conn.in_ready
            && !conn.send_inflight
            && !conn.queue.is_empty()
        {
            conn.in_ready = true;
            self.ready.push(id);
        }
    }

    fn on_timer(&mut self, id: ConnId, kind: TimerKind, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        match kind {
            TimerKind::HandshakeDeadline if conn.phase == Phase::Handshake => {
                self.abort(id, "handshake_timeout");
                self.progress(id);
            }
            TimerKind::Ping if conn.phase == Phase::Open && conn.transport == Transport::Sse => {
                conn.queue.push_control(Bytes::from_static(SSE_KEEPALIVE));
                self.mark_ready(id);
                self.wheel
                    .schedule(now_ms + self.cfg.ping_interval_ms, id, TimerKind::Ping);
            }
            TimerKind::PollDeadline if conn.phase == Phase::Open => {
                let last = self.polls.get(&id.idx).and_then(|p| p.since).unwrap_or(0);
                self.answer_poll(id, &[], last, now_ms);
            }
            TimerKind::Ping if conn.phase == Phase::Open => {
                if conn.ping_sent_ms == 0 {
                    conn.ping_sent_ms = now_ms.max(1);
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
            TimerKind::PongDeadline
                if conn.phase == Phase::Open
                    && conn.ping_sent_ms != 0
                    && now_ms.saturating_sub(conn.ping_sent_ms) >= self.cfg.pong_timeout_ms =>
            {
                self.counters.ping_timeouts += 1;
                self.abort(id, "ping_timeout");
                self.progress(id);
            }
            TimerKind::Linger if conn.phase == Phase::Closing => {
                conn.gone = true;
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

    /// Runs a client's `{"subscribe":"x"}` or `{"unsubscribe":"x"}` and returns the JSON
    /// answer (an ack or an error; never a silent close).
    fn client_command(&mut self, id: ConnId, text: &[u8]) -> String {
        let reply_error = |error: &str, channel: Option<&str>| match channel {
            Some(c) => serde_json::json!({"error": error, "channel": c}).to_string(),
            None => serde_json::json!({"error": error}).to_string(),
        };
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(text) else {
            return reply_error("expected a JSON object like {\"subscribe\":\"news\"}", None);
        };
        let (verb, channel) = match (map.len(), map.iter().next()) {
            (1, Some((verb, serde_json::Value::String(ch)))) => (verb.as_str(), ch.as_str()),
            _ => {
                return reply_error(
                    "expected one of subscribe, unsubscribe with a channel name",
                    None,
                );
            }
        };
        if !matches!(verb, "subscribe" | "unsubscribe") {
            return reply_error("unknown command", None);
        }
        if self.cfg.auth.requires_token() {
            return reply_error(
                "commands are off with tokens: name channels in the URL",
                Some(channel),
            );
        }
        if !ringcast_proto::is_valid_channel(channel) {
            return reply_error("invalid channel name", Some(channel));
        }
        let done = if verb == "subscribe" {
            self.subscribe(id, channel)
        } else {
            self.unsubscribe(id, channel)
        };
        match (done, verb) {
            (true, _) => serde_json::json!({"ok": verb, "channel": channel}).to_string(),
            (false, "subscribe") => {
                reply_error("already subscribed or channel limit reached", Some(channel))
            }
            (false, _) => reply_error("not subscribed", Some(channel)),
        }
    }

    /// Subscribes `id` to `name`; false if it already was or is at its channel limit.
    fn subscribe(&mut self, id: ConnId, name: &str) -> bool {
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        let already = self
            .channels
            .slot_of(name)
            .is_some_and(|slot| conn.channels.contains(slot));
        if already || conn.channels.len() >= self.cfg.max_channels_per_conn {
            return false;
        }
        let (membership, first) = self.channels.subscribe(name, id.idx);
        conn.channels.add(membership);
        if let Some(channel) = first {
            self.send_interest(channel, true);
        }
        true
    }

    /// Unsubscribes `id` from `name`; false if it was not subscribed.
    fn unsubscribe(&mut self, id: ConnId, name: &str) -> bool {
        let Some(slot) = self.channels.slot_of(name) else {
            return false;
        };
        let Some(membership) = self.conns.get_mut(id).and_then(|c| c.channels.remove(slot)) else {
            return false;
        };
        self.leave(membership);
        true
    }

    /// Unsubscribes `id` from every channel.
    fn unsubscribe_all(&mut self, id: ConnId) {
        let memberships = match self.conns.get_mut(id) {
            Some(conn) if !conn.channels.is_empty() => conn.channels.take_all(),
            _ => return,
        };
        for membership in memberships {
            self.leave(membership);
        }
    }

    /// Removes one subscription from the registry, fixing the position of the
    /// connection that moved into its place, and tells the owner when it was the last.
    fn leave(&mut self, membership: Membership) {
        let departure = self.channels.unsubscribe(membership);
        if let Some(moved) = departure.moved
            && let Some((_, conn)) = self.conns.get_by_idx_mut(moved)
        {
            conn.channels.set_pos(membership.channel, membership.pos);
        }
        if let Some(channel) = departure.emptied {
            self.send_interest(channel, false);
        }
    }

    fn send_interest(&mut self, channel: ChannelName, on: bool) {
        let owner = owner_of(&channel, usize::from(self.cfg.shards));
        if owner == usize::from(self.cfg.id) {
            self.interest(&channel, self.cfg.id, on);
        } else {
            self.outbox[owner].push(ShardMsg::Interest {
                channel,
                shard: self.cfg.id,
                on,
            });
        }
    }

    fn interest(&mut self, channel: &ChannelName, shard: u16, on: bool) {
        if let Some(cmd) = self.owned.interest(channel, shard, on, self.now_ms) {
            self.broker.push(cmd);
        }
    }

    fn publish(&mut self, channel: ChannelName, payload: &Bytes, binary: bool) {
        let Some(publication) = self.owned.publish(&channel, payload, binary) else {
            self.counters.publish_dropped += 1;
            return;
        };
        let seq = publication.seq;
        let opcode = if binary { OpCode::Binary } else { OpCode::Text };
        let frame = encoded(opcode, payload);
        let deflated = self.compression.frame(opcode, payload, FANOUT_WINDOW_BITS);
        if deflated.is_some() {
            self.counters.compressed += 1;
        }
        let mut local = false;
        for shard in publication.shards.iter() {
            if shard == self.cfg.id {
                local = true;
            } else if let Some(out) = self.outbox.get_mut(usize::from(shard)) {
                out.push(ShardMsg::Deliver {
                    channel: channel.clone(),
                    frame: frame.clone(),
                    deflated: deflated.clone(),
                    payload: payload.clone(),
                    binary,
                    seq,
                });
            }
        }
        if local {
            self.deliver(&channel, frame, deflated, payload, binary, seq);
        }
    }

    fn deliver(
        &mut self,
        channel: &str,
        frame: Bytes,
        deflated: Option<Bytes>,
        payload: &Bytes,
        binary: bool,
        seq: u64,
    ) {
        let Some(subs) = self.channels.subscribers(channel) else {
            return;
        };
        let limit = self.cfg.max_queue_bytes as usize;
        let mut slow = std::mem::take(&mut self.slow);
        let mut polls = std::mem::take(&mut self.answered);
        let mut sse: Option<Bytes> = None;
        for &idx in subs {
            let Some((id, conn)) = self.conns.get_by_idx_mut(idx) else {
                continue;
            };
            let frame = match conn.transport {
                Transport::WebSocket => match &deflated {
                    Some(d) if conn.deflate_bits == FANOUT_WINDOW_BITS => d.clone(),
                    _ => frame.clone(),
                },
                Transport::Sse => sse
                    .get_or_insert_with(|| sse_event(seq, payload, binary))
                    .clone(),
                Transport::Poll => {
                    polls.push(id);
                    continue;
                }
            };
            let queued = conn.queue.queued_bytes() as usize;
            if queued + frame.len() > limit {
                match self.cfg.slow_consumer {
                    SlowConsumer::Close => {
                        slow.push(id);
                        continue;
                    }
                    SlowConsumer::DropOldest => {
                        let need = queued + frame.len() - limit;
                        let dropped = conn.queue.drop_waiting_data(need);
                        self.counters.slow_consumer_dropped += dropped as u64;
                        if conn.queue.queued_bytes() as usize + frame.len() > limit {
                            // Even with every waiting message gone it does not fit.
                            self.counters.slow_consumer_dropped += 1;
                            continue;
                        }
                    }
                }
            }
            conn.queue.push_data(frame);
            self.counters.delivered += 1;
            if !conn.in_ready && !conn.send_inflight {
                conn.in_ready = true;
                self.ready.push(id);
            }
        }
        for id in slow.drain(..) {
            self.counters.slow_consumer_closes += 1;
            let payload = close_payload(code::POLICY, "slow consumer");
            self.close_with(id, "slow_consumer", &payload, self.now_ms);
        }
        self.slow = slow;
        let message = [Kept {
            seq,
            payload: payload.clone(),
            binary,
        }];
        for id in polls.drain(..) {
            let waiting_for_it = self
                .polls
                .get(&id.idx)
                .is_some_and(|w| w.generation == id.generation && w.since.is_none_or(|s| seq > s));
            if waiting_for_it {
                self.counters.delivered += 1;
                self.answer_poll(id, &message, seq, self.now_ms);
            }
        }
        self.answered = polls;
    }

    fn start_drain(&mut self, spread_ms: u64, now_ms: u64) {
        if self.drain.is_some() {
            return;
        }
        self.drain = Some(Drain {
            start_ms: now_ms,
            spread_ms: spread_ms.max(1),
            total: self.conns.len(),
            issued: 0,
            cursor: 0,
        });
        self.drain_step(now_ms);
    }

    /// Closes connections with 1001 so that by `start + spread` all are closed, evenly.
    fn drain_step(&mut self, now_ms: u64) {
        let Some(drain) = &self.drain else {
            return;
        };
        let elapsed = now_ms.saturating_sub(drain.start_ms).min(drain.spread_ms);
        let due = (drain.total as u128 * u128::from(elapsed)).div_ceil(u128::from(drain.spread_ms))
            as usize;
        let mut budget = due.saturating_sub(drain.issued);
        let mut issued = 0;
        let mut cursor = drain.cursor;
        let end = self.conns.capacity();
        let going_away = close_payload(code::GOING_AWAY, "server shutting down");
        while budget > 0 && cursor < end {
            if let Some((id, conn)) = self.conns.get_by_idx_mut(cursor) {
                match conn.phase {
                    Phase::Open => {
                        budget -= 1;
                        issued += 1;
                        self.close_with(id, "shutdown", &going_away, now_ms);
                    }
                    Phase::Handshake => {
                        budget -= 1;
                        issued += 1;
                        self.abort(id, "shutdown");
                        self.progress(id);
                    }
                    Phase::Closing => {}
                }
            }
            cursor += 1;
        }
        if let Some(drain) = &mut self.drain {
            drain.cursor = cursor;
            drain.issued += issued;
        }
    }
}

/// The answer that opens an event stream.
const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\nX-Accel-Buffering: no\r\nAccess-Control-Allow-Origin: *\r\n\r\nretry: 2000\n\n";
/// An SSE comment that keeps proxies from timing the stream out.
const SSE_KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// A long-poll connection waiting for its answer.
#[derive(Debug, Clone, Copy)]
struct PollWait {
    generation: u32,
    /// Answer with messages after this id (None until the owner told the last id).
    since: Option<u64>,
}

/// One SSE event: `id`, then one `data:` line per message line (binary as base64
/// under `event: binary`).
fn sse_event(seq: u64, payload: &[u8], binary: bool) -> Bytes {
    let mut out = format!("id: {seq}\n");
    if binary {
        out.push_str("event: binary\ndata: ");
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(payload));
        out.push('\n');
    } else {
        for line in String::from_utf8_lossy(payload).split('\n') {
            out.push_str("data: ");
            out.push_str(line.strip_suffix('\r').unwrap_or(line));
            out.push('\n');
        }
    }
    out.push('\n');
    Bytes::from(out)
}

/// The HTTP answer to a long poll: 200 with the messages as JSON, or 204.
fn poll_response(messages: &[Kept], last_seq: u64) -> Vec<u8> {
    if messages.is_empty() {
        return format!(
            "HTTP/1.1 204 No Content\r\nX-Ringcast-Last-Id: {last_seq}\r\nCache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
    }
    let items: Vec<serde_json::Value> = messages
        .iter()
        .map(|k| {
            if k.binary {
                let data = base64::engine::general_purpose::STANDARD.encode(&k.payload);
                serde_json::json!({"id": k.seq, "data": data, "binary": true})
            } else {
                let data = String::from_utf8_lossy(&k.payload);
                serde_json::json!({"id": k.seq, "data": data})
            }
        })
        .collect();
    let last = messages.last().map_or(last_seq, |k| k.seq);
    let body = serde_json::json!({"last_id": last, "messages": items}).to_string();
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One unmasked FIN frame in a fresh shared buffer.
fn encoded(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    encode_frame(&mut out, opcode, payload, None);
    Bytes::from(out)
}
