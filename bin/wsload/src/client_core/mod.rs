//! The sans-IO core of one worker's connections: a slab of connection slots and the state
//! machine each goes through (connect → handshake → open → scenario traffic → close, and
//! for churn back to connect), driven by events and answering with [`Action`]s. It owns no
//! socket, no reactor and no clock: the glue ([`engine`](crate::engine)) passes the time
//! into every call, performs the actions, and reports what the kernel did.
//!
//! Calling contract for the glue:
//! - Start connections with [`ClientCore::start_connect`]; run the timers with
//!   [`ClientCore::expire`] and wake no later than [`ClientCore::next_deadline`].
//! - Report every completion: [`ClientCore::on_connect_done`], [`ClientCore::on_recv`]
//!   (then recycle the buffer), [`ClientCore::on_send_done`], and
//!   [`ClientCore::on_socket_failed`] when an [`Action::Connect`] could not even create
//!   its socket. Completions of an older generation of a slot are ignored.
//! - Call [`ClientCore::flush_sends`] before waiting and after a batch of completions.
//! - Drive the phases: [`ClientCore::end_ramp`], [`ClientCore::start_scenario`] and
//!   [`ClientCore::scenario_step`] during the measured phase, [`ClientCore::begin_stop`],
//!   then [`ClientCore::abort_all`] if the close takes too long.
//! - After every call, drain [`ClientCore::poll_action`] and perform each action in order
//!   (a slot's `Close` comes before the `Connect` that reuses it). The bytes of an
//!   [`Action::Send`] ([`ClientCore::unsent`]) stay where they are until the matching
//!   `on_send_done`.

mod activity;
mod deadlines;
mod handshake;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ringcast_proto::{
    Decoder, Role, client_request, client_request_with_extensions, code,
    deflate::CLIENT_OFFER as DEFLATE_OFFER, generate_key,
};
use ringcast_uring::GEN_MASK;

use self::deadlines::Deadlines;
use self::handshake::{Step, feed, handshake_bytes};
use crate::addr_plan::AddrPlan;
use crate::conn::{Handshake, MAX_MESSAGE_BYTES, MessageCtx, Slot, State, flag};
use crate::figures::Figures;
use crate::resume::Resume;
use crate::rng::Rng;
use crate::scenario::Scenario;
use crate::send_pool::SendPool;
use crate::stats::ConnectFailure;

/// How long a closing connection waits for the server to end the TCP connection.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Most extra delay added to a server's `Retry-After`, so the clients it deferred in the
/// same second do not all come back in the same millisecond.
const RETRY_JITTER_MS: u64 = 1_000;

/// What the core needs to know of the run.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    /// Scenario.
    pub(crate) scenario: Scenario,
    /// Offer permessage-deflate.
    pub(crate) deflate: bool,
    /// Connect + handshake deadline.
    pub(crate) connect_timeout: Duration,
    /// Start of the whole run (message times are counted from it).
    pub(crate) epoch: Instant,
    /// `--resume`: JSON framing, and a connection the server ends reconnects to the next
    /// URL from its last position.
    pub(crate) resume: bool,
    /// The TLS client configuration for `wss://` targets.
    pub(crate) tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// TLS: each connection number names its own server (resumes its own session).
    pub(crate) tls_own_names: bool,
}

/// One connection: its slot and the generation of the slot's current use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotRef {
    /// Slot number.
    pub(crate) id: u32,
    /// Generation (masked to the reactor's 24 bits).
    pub(crate) r#gen: u32,
}

/// What the glue must do for the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Create a TCP socket bound to `source` (port 0) for `slot` and connect it to `dest`;
    /// report [`ClientCore::on_connect_done`], or [`ClientCore::on_socket_failed`] if the
    /// socket could not be made.
    Connect {
        /// The connection.
        slot: SlotRef,
        /// Local address.
        source: Ipv4Addr,
        /// Server address.
        dest: SocketAddr,
    },
    /// Arm a multishot receive; report [`ClientCore::on_recv`].
    ArmRecv(SlotRef),
    /// Send [`ClientCore::unsent`]; report [`ClientCore::on_send_done`].
    Send(SlotRef),
    /// Shut the socket of slot `id` down so every operation pending on it completes.
    Shutdown(u32),
    /// Close the socket of slot `id` (nothing is in flight on it any more).
    Close(u32),
}

/// What a receive completion brought.
#[derive(Debug)]
pub(crate) enum Received<'a> {
    /// Bytes (the glue recycles their buffer after the call).
    Bytes(&'a mut [u8]),
    /// The server ended the TCP connection.
    End,
    /// The provided buffer ring was empty (the receive is re-armed).
    NoBuffers,
    /// The receive failed with this errno.
    Error(i32),
}

/// The connections of one worker.
pub(crate) struct ClientCore {
    config: ClientConfig,
    plan: AddrPlan,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots in use.
    live: u64,
    figures: Figures,
    /// Open connections still waiting for `--expect-messages`.
    awaiting: u64,
    /// Connects and handshakes in progress.
    in_flight: u64,
    pool: SendPool,
    rng: Rng,
    /// Slots that may have bytes to send.
    dirty: Vec<u32>,
    actions: VecDeque<Action>,
    connect_deadlines: Deadlines,
    close_deadlines: Deadlines,
    /// Next echo send of every echoing connection.
    echo_due: Deadlines,
    next_churn: Option<Instant>,
    /// Connections the server deferred (`503` + `Retry-After`), by when they try again:
    /// (when, address-plan index, whether it was a reopening).
    retries: BinaryHeap<Reverse<(Instant, u32, bool)>>,
    /// End of the nominal measured phase.
    measure_end: Option<Instant>,
    /// Echo body being built.
    body: Vec<u8>,
    /// The final close has begun: no more reopening.
    stopping: bool,
    /// `--resume`: each connection number's position, kept across its connections.
    resumes: HashMap<u32, Resume>,
    /// TLS: the plaintext of one receive (reused).
    tls_plain: Vec<u8>,
}

impl ClientCore {
    /// An empty core for connections planned by `plan`; `seed` seeds keys and masks.
    pub(crate) fn new(config: ClientConfig, plan: AddrPlan, capacity: usize, seed: u64) -> Self {
        Self {
            config,
            plan,
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            live: 0,
            figures: Figures::default(),
            awaiting: 0,
            in_flight: 0,
            pool: SendPool::default(),
            rng: Rng::new(seed),
            dirty: Vec::new(),
            actions: VecDeque::new(),
            connect_deadlines: Deadlines::default(),
            close_deadlines: Deadlines::default(),
            echo_due: Deadlines::default(),
            next_churn: None,
            retries: BinaryHeap::new(),
            measure_end: None,
            body: Vec::new(),
            stopping: false,
            resumes: HashMap::new(),
            tls_plain: Vec::new(),
        }
    }

    /// The figures so far.
    pub(crate) fn figures(&self) -> &Figures {
        &self.figures
    }

    /// The figures, for the glue's own entries (target, phase lengths, usage).
    pub(crate) fn figures_mut(&mut self) -> &mut Figures {
        &mut self.figures
    }

    /// Slots in use (connecting, open, closing or waiting for in-flight operations).
    pub(crate) fn live(&self) -> u64 {
        self.live
    }

    /// Connects and handshakes in progress.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Open connections still waiting for their expected messages.
    pub(crate) fn awaiting(&self) -> u64 {
        self.awaiting
    }

    /// Slots ever allocated (the glue sizes its socket table by it).
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The next thing the glue must do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The bytes of slot `id`'s send in flight (after an [`Action::Send`]).
    pub(crate) fn unsent(&self, id: u32) -> &[u8] {
        self.slots
            .get(id as usize)
            .and_then(|slot| slot.link.out.as_deref())
            .map_or(&[], |out| &out.sending[out.offset.min(out.sending.len())..])
    }

    /// When the next connect, close or retry deadline expires.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [
            self.connect_deadlines.next_at(),
            self.close_deadlines.next_at(),
            self.retries.peek().map(|Reverse((at, _, _))| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Open connections per channel number (`index % channels`).
    pub(crate) fn channel_subscribers(&self, channels: usize) -> Vec<u64> {
        let channels = channels.max(1);
        let mut counts = vec![0u64; channels];
        for slot in &self.slots {
            if slot.link.state == State::Open {
                counts[slot.link.index as usize % channels] += 1;
            }
        }
        counts
    }

    // ----- events ------------------------------------------------------------------------

    /// Starts connection `index` of the address plan in a new slot.
    pub(crate) fn start_connect(&mut self, index: usize, now: Instant) {
        let id = self.alloc();
        self.connect(index, id, false, now);
    }

    /// The socket of an [`Action::Connect`] could not be created.
    pub(crate) fn on_socket_failed(&mut self, slot: SlotRef, errno: i32, now: Instant) {
        let Some(id) = self.current(slot) else {
            return;
        };
        self.slots[id].link.flags &= !flag::CONNECT_IN_FLIGHT;
        self.fail_setup(id, ConnectFailure::from_errno(errno), now);
        self.free_slot(id);
    }

    /// A connect completed (`Err(errno)` if it failed).
    pub(crate) fn on_connect_done(&mut self, slot: SlotRef, result: Result<(), i32>, now: Instant) {
        let Some(id) = self.current(slot) else {
            return;
        };
        let link = &mut self.slots[id].link;
        link.flags &= !flag::CONNECT_IN_FLIGHT;
        if link.state == State::Connecting {
            match result {
                Ok(()) => {
                    link.flags |= flag::RECV_ARMED;
                    link.state = State::Handshaking;
                    self.actions
                        .push_back(Action::ArmRecv(slot_ref(id, link.r#gen)));
                    self.dirty.push(id as u32);
                }
                Err(errno) => self.fail_setup(id, ConnectFailure::from_errno(errno), now),
            }
        }
        self.release_if_done(id, now);
    }

    /// A receive completed; `more` says whether the multishot receive stays armed.
    /// `now_ns` is the wall clock (Unix ns) for one-way latencies.
    pub(crate) fn on_recv(
        &mut self,
        slot: SlotRef,
        received: Received<'_>,
        more: bool,
        now: Instant,
        now_ns: u64,
    ) {
        let Some(id) = self.current(slot) else {
            return;
        };
        if !more {
            self.slots[id].link.flags &= !flag::RECV_ARMED;
        }
        match received {
            Received::End => self.on_recv_end(id, None, now),
            Received::Bytes(data) => {
                self.on_bytes(id, data, now, now_ns);
                if !more {
                    self.rearm_recv(id);
                }
            }
            Received::NoBuffers => {
                self.figures.counters.recv_enobufs += 1;
                self.rearm_recv(id);
            }
            Received::Error(errno) => self.on_recv_end(id, Some(errno), now),
        }
        self.release_if_done(id, now);
    }

    /// A send completed: `Ok(bytes taken)` or `Err(errno)`.
    pub(crate) fn on_send_done(&mut self, slot: SlotRef, result: Result<u32, i32>, now: Instant) {
        let Some(id) = self.current(slot) else {
            return;
        };
        let link = &mut self.slots[id].link;
        link.flags &= !flag::SEND_IN_FLIGHT;
        match result {
            Ok(sent) => {
                if let Some(out) = link.out.as_mut() {
                    out.offset += sent as usize;
                    if out.offset >= out.sending.len() {
                        out.sending.clear();
                        out.offset = 0;
                    }
                }
                if link.state == State::Done {
                    link.drop_outbox(&mut self.pool);
                } else {
                    self.dirty.push(id as u32);
                }
            }
            Err(errno) => self.on_send_error(id, errno, now),
        }
        self.release_if_done(id, now);
    }

    /// Connections the server deferred that have not tried again yet. During the ramp
    /// every one is a first connect (reopenings begin with the measured phase), and the
    /// ramp waits for them.
    pub(crate) fn deferred_waiting(&self) -> usize {
        self.retries.len()
    }

    /// Expires the connect and close deadlines due at `now`, and starts the deferred
    /// connections whose `Retry-After` has passed.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(Reverse((at, index, reconnect))) = self.retries.peek().copied() {
            if at > now || self.stopping {
                break;
            }
            self.retries.pop();
            let id = self.alloc();
            self.connect(index as usize, id, reconnect, now);
        }
        while let Some(deadline) = self.connect_deadlines.pop_expired(now) {
            if let Some(id) = self.current(deadline.slot) {
                self.fail_setup(id, ConnectFailure::Timeout, now);
                self.release_if_done(id, now);
            }
        }
        while let Some(deadline) = self.close_deadlines.pop_expired(now) {
            if let Some(id) = self.current(deadline.slot)
                && self.slots[id].link.state == State::Closing
            {
                self.end_open(id);
                self.abort(id);
                self.release_if_done(id, now);
            }
        }
    }

    /// Asks for the next send of every connection that has bytes waiting and none in
    /// flight.
    pub(crate) fn flush_sends(&mut self) {
        for id in std::mem::take(&mut self.dirty) {
            let link = &mut self.slots[id as usize].link;
            if !matches!(
                link.state,
                State::Handshaking | State::Open | State::Closing
            ) || link.has(flag::SEND_IN_FLIGHT)
            {
                continue;
            }
            link.stage_tls(&mut self.pool);
            let Some(out) = link.out.as_mut() else {
                continue;
            };
            if out.offset >= out.sending.len() {
                if out.queued.is_empty() {
                    link.drop_outbox(&mut self.pool);
                    continue;
                }
                std::mem::swap(&mut out.sending, &mut out.queued);
                out.queued.clear();
                out.offset = 0;
            }
            // From here `out.sending` stays untouched until the send completes: new frames
            // go to `out.queued`, and the outbox is only dropped with no send in flight.
            link.flags |= flag::SEND_IN_FLIGHT;
            self.actions
                .push_back(Action::Send(slot_ref(id as usize, link.r#gen)));
        }
    }

    // ----- connection lifecycle ----------------------------------------------------------

    /// Starts connection `index` in slot `id` (a reopening if `reconnect`).
    fn connect(&mut self, index: usize, id: usize, reconnect: bool, now: Instant) {
        let mut kept = (0, 0);
        let assignment = if self.config.resume {
            let resume = self.resumes.entry(index as u32).or_default();
            let mut assignment = self
                .plan
                .assign_to(index, resume.target(index, self.plan.urls()));
            assignment.add_query(&resume.query());
            kept = (resume.messages, resume.kept_flags);
            assignment
        } else {
            self.plan.assign(index)
        };
        let key = generate_key(self.rng.next_u64());
        let request = if self.config.deflate {
            client_request_with_extensions(
                &assignment.host_header,
                &assignment.path,
                &key,
                DEFLATE_OFFER,
            )
        } else {
            client_request(&assignment.host_header, &assignment.path, &key)
        };
        let slot = &mut self.slots[id];
        slot.decoder = Decoder::new(Role::Client, MAX_MESSAGE_BYTES);
        let link = &mut slot.link;
        link.tls = match (&self.config.tls, assignment.tls) {
            (Some(config), true) => {
                let own = self.config.tls_own_names;
                crate::tls_client::connect(config, assignment.dest.ip(), index, own).map(Box::new)
            }
            _ => None,
        };
        link.r#gen = (link.r#gen + 1) & GEN_MASK;
        link.index = index as u32;
        link.state = State::Connecting;
        link.flags = flag::CONNECT_IN_FLIGHT | if reconnect { flag::RECONNECT } else { 0 } | kept.1;
        link.echo_seq = 0;
        link.seq = Default::default();
        link.messages = kept.0;
        link.handshake = Some(Box::new(Handshake {
            key,
            response: Vec::new(),
            started: now,
        }));
        link.queue_raw(&mut self.pool, &request);
        let at = slot_ref(id, link.r#gen);
        self.actions.push_back(Action::Connect {
            slot: at,
            source: assignment.source,
            dest: assignment.dest,
        });
        self.in_flight += 1;
        self.connect_deadlines
            .push(now + self.config.connect_timeout, at);
    }

    fn alloc(&mut self) -> usize {
        self.live += 1;
        match self.free.pop() {
            Some(id) => id as usize,
            None => {
                self.slots.push(Slot::free());
                self.slots.len() - 1
            }
        }
    }

    fn free_slot(&mut self, id: usize) {
        let slot = &mut self.slots[id];
        slot.link.drop_outbox(&mut self.pool);
        slot.link.handshake = None;
        slot.link.tls = None;
        slot.link.state = State::Free;
        slot.link.flags = 0;
        slot.decoder = Decoder::new(Role::Client, MAX_MESSAGE_BYTES);
        self.free.push(id as u32);
        self.live -= 1;
    }

    /// The slot an event is for, if it is still the same connection.
    fn current(&self, slot: SlotRef) -> Option<usize> {
        let id = slot.id as usize;
        let link = &self.slots.get(id)?.link;
        (link.state != State::Free && link.r#gen == (slot.r#gen & GEN_MASK)).then_some(id)
    }

    /// A connect or handshake failed (or timed out): count it once and end the attempt.
    /// With `--resume` a failed reconnect is no failure: the connection number tries the
    /// next URL after a backoff.
    fn fail_setup(&mut self, id: usize, why: ConnectFailure, now: Instant) {
        let link = &mut self.slots[id].link;
        if !matches!(link.state, State::Connecting | State::Handshaking) {
            return;
        }
        let resumed = self.config.resume && link.has(flag::RECONNECT) && !self.stopping;
        if resumed {
            let index = link.index;
            let backoff = self.resumes.entry(index).or_default().on_reconnect_failed();
            let jitter =
                Duration::from_nanos(self.rng.next_u64() % (backoff.as_nanos() as u64 / 2).max(1));
            self.retries
                .push(Reverse((now + backoff + jitter, index, true)));
            self.figures.counters.resume_retries += 1;
        } else {
            self.figures.counters.connect_errors.count(why, 1);
            if link.has(flag::RECONNECT) {
                self.figures.counters.reconnect_failures += 1;
            }
        }
        let link = &mut self.slots[id].link;
        self.in_flight -= 1;
        link.state = State::Done;
        link.handshake = None;
        link.flags &= !flag::REOPEN;
        self.abort(id);
    }

    /// The server deferred a handshake (`503` + `Retry-After`): not a failure; the
    /// connection ends and the same address-plan index tries again `after` (plus up to
    /// [`RETRY_JITTER_MS`]) from now.
    fn defer(&mut self, id: usize, after: Duration, now: Instant) {
        let link = &mut self.slots[id].link;
        if link.state != State::Handshaking {
            return;
        }
        self.figures.counters.deferred += 1;
        self.in_flight -= 1;
        link.state = State::Done;
        link.handshake = None;
        let reconnect = link.has(flag::RECONNECT);
        link.flags &= !flag::REOPEN;
        let index = link.index;
        let jitter = Duration::from_millis(self.rng.next_u64() % RETRY_JITTER_MS);
        self.retries
            .push(Reverse((now + after + jitter, index, reconnect)));
        self.abort(id);
    }

    /// An open (or closing) connection ended. One the server ended under `--resume`
    /// hands its count and expectations to the connection that resumes it.
    fn end_open(&mut self, id: usize) {
        let link = &mut self.slots[id].link;
        if !matches!(link.state, State::Open | State::Closing) {
            return;
        }
        self.figures.counters.open -= 1;
        if link.has(flag::RESUMING) {
            let resume = self.resumes.entry(link.index).or_default();
            resume.messages = link.messages;
            resume.kept_flags = link.flags & flag::KEPT_ACROSS_RESUMES;
        } else if link.has(flag::AWAITING) {
            link.flags &= !flag::AWAITING;
            self.awaiting = self.awaiting.saturating_sub(1);
        }
        link.state = State::Done;
    }

    /// Shuts the socket down (once) if anything is pending on it.
    fn abort(&mut self, id: usize) {
        let link = &mut self.slots[id].link;
        let pending = flag::RECV_ARMED | flag::CONNECT_IN_FLIGHT | flag::SEND_IN_FLIGHT;
        if !link.has(flag::ABORTED) && link.flags & pending != 0 {
            link.flags |= flag::ABORTED;
            self.actions.push_back(Action::Shutdown(id as u32));
        }
    }

    /// Sends close 1000 and waits (bounded) for the server to end the connection.
    fn graceful_close(&mut self, id: usize, now: Instant) {
        let link = &mut self.slots[id].link;
        link.queue_close(&mut self.pool, &mut self.rng, code::NORMAL);
        link.state = State::Closing;
        self.close_deadlines
            .push(now + CLOSE_GRACE, slot_ref(id, link.r#gen));
        self.dirty.push(id as u32);
    }

    /// Closes the socket of a finished connection once nothing is in flight on it, then
    /// frees the slot or reopens the connection (churn).
    fn release_if_done(&mut self, id: usize, now: Instant) {
        let link = &mut self.slots[id].link;
        let pending = flag::RECV_ARMED | flag::CONNECT_IN_FLIGHT | flag::SEND_IN_FLIGHT;
        if link.state != State::Done || link.flags & pending != 0 {
            return;
        }
        self.actions.push_back(Action::Close(id as u32));
        link.drop_outbox(&mut self.pool);
        if link.has(flag::REOPEN) && !self.stopping {
            let index = link.index as usize;
            self.connect(index, id, true, now);
        } else {
            self.free_slot(id);
        }
    }

    fn rearm_recv(&mut self, id: usize) {
        let link = &mut self.slots[id].link;
        let wants = matches!(
            link.state,
            State::Handshaking | State::Open | State::Closing
        );
        if wants && !link.has(flag::RECV_ARMED) && !link.has(flag::ABORTED) {
            link.flags |= flag::RECV_ARMED;
            self.actions
                .push_back(Action::ArmRecv(slot_ref(id, link.r#gen)));
        }
    }

    /// The receive side ended: EOF (`None`) or an error.
    fn on_recv_end(&mut self, id: usize, errno: Option<i32>, now: Instant) {
        let why = errno.map_or(ConnectFailure::Reset, ConnectFailure::from_errno);
        self.connection_lost(id, why, now);
    }

    fn on_send_error(&mut self, id: usize, errno: i32, now: Instant) {
        self.connection_lost(id, ConnectFailure::from_errno(errno), now);
        self.slots[id].link.drop_outbox(&mut self.pool);
    }

    /// The TCP connection broke (EOF, reset, failed send): a handshake fails with `why`, an
    /// open connection counts as closed by the server (or resumes), a closing one just
    /// ends.
    fn connection_lost(&mut self, id: usize, why: ConnectFailure, now: Instant) {
        match self.slots[id].link.state {
            State::Handshaking => self.fail_setup(id, why, now),
            State::Open => {
                self.server_ended(id, now);
                self.end_open(id);
                self.abort(id);
            }
            State::Closing => {
                self.end_open(id);
                self.abort(id);
            }
            _ => {}
        }
    }

    /// The server ended an open connection (close frame, EOF or reset): a failure, or with
    /// `--resume` the start of a resumption at the next URL.
    fn server_ended(&mut self, id: usize, now: Instant) {
        let link = &mut self.slots[id].link;
        if self.config.resume && !self.stopping {
            self.resumes.entry(link.index).or_default().on_lost(now);
            link.flags |= flag::RESUMING | flag::REOPEN;
            self.figures.counters.resume_server_closes += 1;
        } else {
            self.figures.counters.closed_by_server += 1;
        }
    }

    /// Received bytes: on TLS first decrypted, then the handshake response or frames.
    fn on_bytes(&mut self, id: usize, data: &mut [u8], now: Instant, now_ns: u64) {
        let Some(tls) = self.slots[id].link.tls.as_deref_mut() else {
            self.on_plain(id, data, now, now_ns);
            return;
        };
        let mut plain = std::mem::take(&mut self.tls_plain);
        let decrypted = crate::tls_client::decrypt(tls, data, &mut plain);
        if decrypted.is_ok() && !plain.is_empty() {
            self.on_plain(id, &mut plain, now, now_ns);
        }
        plain.clear();
        self.tls_plain = plain;
        if decrypted.is_err() {
            match self.slots[id].link.state {
                State::Handshaking => self.fail_setup(id, ConnectFailure::Handshake, now),
                State::Open | State::Closing => {
                    self.figures.counters.protocol_errors += 1;
                    self.end_open(id);
                    self.abort(id);
                }
                _ => {}
            }
        } else if self.slots[id].link.wants_send() {
            self.dirty.push(id as u32);
        }
    }

    /// Plaintext received: handshake response or frames.
    fn on_plain(&mut self, id: usize, data: &mut [u8], now: Instant, now_ns: u64) {
        let Self {
            config,
            slots,
            figures,
            awaiting,
            pool,
            rng,
            resumes,
            ..
        } = self;
        let slot = &mut slots[id];
        let resume = if config.resume {
            resumes.get_mut(&slot.link.index)
        } else {
            None
        };
        let mut ctx = MessageCtx {
            figures,
            awaiting,
            pool,
            rng,
            expect_messages: match config.scenario {
                Scenario::Hold { expect_messages } => expect_messages,
                _ => None,
            },
            ticks: config.scenario == Scenario::Tick,
            now,
            at_s: now.saturating_duration_since(config.epoch).as_secs_f64(),
            now_ns,
            resume,
        };
        let step = match slot.link.state {
            State::Handshaking => handshake_bytes(slot, data, &mut ctx),
            State::Open | State::Closing => Step::Fed(feed(slot, data, &mut ctx)),
            _ => Step::Pending,
        };
        let fed = match step {
            Step::Pending => Ok(()),
            Step::Failed => {
                self.fail_setup(id, ConnectFailure::Handshake, now);
                Ok(())
            }
            Step::Deferred(after) => {
                self.defer(id, after, now);
                Ok(())
            }
            Step::Opened(fed) => {
                self.in_flight -= 1;
                fed
            }
            Step::Fed(fed) => fed,
        };
        if fed.is_err() {
            self.figures.counters.protocol_errors += 1;
            self.end_open(id);
            self.abort(id);
        }
        let link = &self.slots[id].link;
        if link.state == State::Open && link.has(flag::CLOSE_RECEIVED) {
            if link.has(flag::SERVER_CLOSED) {
                self.server_ended(id, now);
            }
            let link = &mut self.slots[id].link;
            link.state = State::Closing;
            self.close_deadlines
                .push(now + CLOSE_GRACE, slot_ref(id, link.r#gen));
        }
        if self.slots[id].link.wants_send() {
            self.dirty.push(id as u32);
        }
    }
}

fn slot_ref(id: usize, r#gen: u32) -> SlotRef {
    SlotRef {
        id: id as u32,
        r#gen,
    }
}
