//! The client engine of one worker: one thread, one `ringcast-uring` reactor, a slab of
//! connection slots. It ramps the connections up at the paced rate (bounded connects in
//! flight, each bound to its source IP with the port chosen at connect time), runs the
//! scenario's measured phase (idle hold, echo sends, churn rounds), closes everything with
//! 1000 and reports. Connects, multishot receives into the reactor's provided buffer ring
//! and vectored sends are io_uring operations; deadlines live in three FIFO queues (connect,
//! close, echo), never in one kernel timer per connection.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ringcast_proto::{
    ClientHandshakeStatus, Decoder, OpCode, ProtocolError, Role, accepted_extension,
    client_request, client_request_with_extensions, code, deflate::CLIENT_OFFER as DEFLATE_OFFER,
    generate_key, parse_response,
};
use ringcast_uring::{
    Completion, GEN_MASK, Reactor, ReactorConfig, RecvBuf, close_fd, set_nodelay, shutdown_socket,
    tcp_socket_bound,
};

use crate::addr_plan::AddrPlan;
use crate::conn::{Handshake, Link, MAX_MESSAGE_BYTES, MessageCtx, Slot, State, flag};
use crate::payload::{realtime_ns, write_body};
use crate::rng::Rng;
use crate::scenario::{Scenario, WorkerParams};
use crate::self_usage::UsagePoint;
use crate::send_pool::SendPool;
use crate::stats::ConnectFailure;
use crate::tally::Tally;
use crate::wire::{Snapshot, Usage, WorkerEvent, WorkerReport};

/// Longest single wait in the reactor (also how fast a stop request is noticed).
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Progress snapshot period.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How long a closing connection waits for the server to end the TCP connection.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// How long the final close phase may take before the rest is aborted.
const CLOSE_PHASE: Duration = Duration::from_secs(5);
/// How long aborted connections get to finish their in-flight operations.
const ABORT_PHASE: Duration = Duration::from_secs(1);
/// Extra ramp time beyond twice the paced ramp and one connect timeout.
const RAMP_SLACK: Duration = Duration::from_secs(5);
/// Connect rate assumed for the ramp deadline when `--rate 0` (no pacing).
const UNPACED_RATE_FLOOR: f64 = 1000.0;
/// A coordinated phase ends by itself this long after `--duration` if no stop comes.
const COORDINATED_FALLBACK: Duration = Duration::from_secs(600);
/// Descriptors kept free besides the sockets.
const FD_MARGIN: u64 = 100;
/// Largest channel number tracked for subscriber counts.
const MAX_TRACKED_CHANNELS: usize = 1 << 20;

/// Where a worker's events go.
pub trait EventSink {
    /// Delivers one event.
    fn send(&mut self, event: WorkerEvent) -> anyhow::Result<()>;
}

/// A deadline of one connection.
#[derive(Debug, Clone, Copy)]
struct Timer {
    at: Instant,
    id: u32,
    r#gen: u32,
}

/// Runs one worker to its end: ramp, measured phase until its end (or `stop`), close,
/// report. Every event, the final report included, goes to `sink`.
pub fn run(
    params: &WorkerParams,
    stop: &AtomicBool,
    sink: &mut dyn EventSink,
) -> anyhow::Result<()> {
    let fd_limit = raise_fd_limit();
    let target = params.target();
    if target + FD_MARGIN > fd_limit {
        eprintln!(
            "[wsload] warning: {target} connections in one process but the fd limit is \
             {fd_limit}; use --procs"
        );
    }
    let mut engine = Engine::new(params)?;
    engine.run(stop, sink)
}

/// Raises the soft fd limit to the hard one; returns the limit now in force.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            }
        }
    }
    limit.rlim_cur
}

/// One worker's state. `reactor` is declared first so it is dropped (cancelling every
/// in-flight operation) before the slots whose send buffers those operations reference.
struct Engine<'p> {
    reactor: Reactor,
    params: &'p WorkerParams,
    plan: AddrPlan,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: u64,
    tally: Tally,
    pool: SendPool,
    rng: Rng,
    completions: Vec<Completion>,
    dirty: Vec<u32>,
    connect_deadlines: VecDeque<Timer>,
    close_deadlines: VecDeque<Timer>,
    echo_due: VecDeque<Timer>,
    next_churn: Option<Instant>,
    /// End of the nominal measured phase (`--duration` after the ramp).
    measure_end: Instant,
    body: Vec<u8>,
    stopping: bool,
    next_progress: Instant,
    usage: Usage,
}

impl<'p> Engine<'p> {
    fn new(params: &'p WorkerParams) -> anyhow::Result<Self> {
        let plan = AddrPlan::new(&params.url, &params.source_ips, params.channels)?;
        let reactor = Reactor::new(ReactorConfig {
            sq_entries: 4096,
            buf_count: params.recv_buffers,
            buf_size: params.recv_buffer_size,
        })
        .context("creating the io_uring reactor")?;
        let seed =
            (params.slot.index as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ realtime_ns();
        Ok(Self {
            reactor,
            params,
            plan,
            slots: Vec::with_capacity(params.target() as usize),
            free: Vec::new(),
            live: 0,
            tally: Tally::default(),
            pool: SendPool::default(),
            rng: Rng::new(seed),
            completions: Vec::with_capacity(4096),
            dirty: Vec::new(),
            connect_deadlines: VecDeque::new(),
            close_deadlines: VecDeque::new(),
            echo_due: VecDeque::new(),
            next_churn: None,
            measure_end: Instant::now(),
            body: Vec::new(),
            stopping: false,
            next_progress: Instant::now() + PROGRESS_EVERY,
            usage: Usage::default(),
        })
    }

    fn run(&mut self, stop: &AtomicBool, sink: &mut dyn EventSink) -> anyhow::Result<()> {
        let p = self.params;
        self.usage.start = UsagePoint::now(0);
        let target = p.target();
        self.tally.counters.target = target;
        let ramp_start = Instant::now();
        let ramp_seconds = self.ramp(stop, sink, ramp_start)?;
        let open = self.tally.counters.open;
        self.usage.ramp_end = UsagePoint::now(open);
        sink.send(WorkerEvent::RampDone { connected: open })?;
        self.progress(sink, true)?;

        let hold_start = Instant::now();
        self.hold(stop, sink, hold_start)?;
        let hold_seconds = hold_start.elapsed().as_secs_f64();
        self.usage.hold_end = UsagePoint::now(self.tally.counters.open);
        let channel_subscribers = self.channel_subscribers();
        sink.send(WorkerEvent::HoldDone {
            messages: self.tally.counters.messages,
        })?;

        self.close_all(sink)?;
        self.progress(sink, true)?;
        let report = self.report(ramp_seconds, hold_seconds, channel_subscribers);
        sink.send(WorkerEvent::Report(Box::new(report)))
    }

    /// Opens this worker's connections at the paced rate; returns the ramp's length.
    fn ramp(
        &mut self,
        stop: &AtomicBool,
        sink: &mut dyn EventSink,
        ramp_start: Instant,
    ) -> anyhow::Result<f64> {
        let p = self.params;
        let target = p.target();
        let rate = p.rate / p.slot.count.max(1) as f64;
        let paced = Duration::from_secs_f64(
            target as f64 / if rate > 0.0 { rate } else { UNPACED_RATE_FLOOR },
        );
        let ramp_deadline = ramp_start + paced * 2 + p.connect_timeout + RAMP_SLACK;
        let mut indices = p.indices();
        let mut started = 0u64;
        loop {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let mut wake_at = now + MAX_WAIT;
            while started < target
                && now < ramp_deadline
                && (self.tally.in_flight as usize) < p.max_in_flight.max(1)
            {
                if rate > 0.0 {
                    let due = ramp_start + Duration::from_secs_f64(started as f64 / rate);
                    if due > now {
                        wake_at = due;
                        break;
                    }
                }
                let Some(index) = indices.next() else {
                    break;
                };
                self.start_connect(index, None, false, now);
                started += 1;
            }
            if self.usage.mid.is_none() && target > 0 && self.tally.counters.open * 2 >= target {
                self.usage.mid = Some(UsagePoint::now(self.tally.counters.open));
            }
            if (started >= target && self.tally.in_flight == 0) || now >= ramp_deadline {
                break;
            }
            self.turn(wake_at.min(ramp_deadline))?;
            self.progress(sink, false)?;
        }
        if started < target {
            self.tally
                .counters
                .connect_errors
                .count(ConnectFailure::Timeout, target - started);
        }
        for id in 0..self.slots.len() {
            if matches!(
                self.slots[id].link.state,
                State::Connecting | State::Handshaking
            ) {
                self.fail_setup(id, ConnectFailure::Timeout);
                self.release_if_done(id, Instant::now());
            }
        }
        Ok(ramp_start.elapsed().as_secs_f64())
    }

    /// The measured phase: until `--duration` (hold), every expected message, or `stop`.
    fn hold(
        &mut self,
        stop: &AtomicBool,
        sink: &mut dyn EventSink,
        hold_start: Instant,
    ) -> anyhow::Result<()> {
        let p = self.params;
        let scenario = p.scenario;
        let hold_end = hold_start
            + p.duration
            + if scenario.ends_itself() {
                Duration::ZERO
            } else {
                COORDINATED_FALLBACK
            };
        self.measure_end = hold_start + p.duration;
        self.start_scenario(hold_start);
        loop {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) || now >= hold_end {
                return Ok(());
            }
            if let Scenario::Hold {
                expect_messages: Some(_),
            } = scenario
                && self.tally.awaiting == 0
            {
                return Ok(());
            }
            let wake_at = self.scenario_step(now);
            self.turn(wake_at.min(hold_end))?;
            self.progress(sink, false)?;
        }
    }

    /// Closes every connection with 1000, waits for the server's answers (bounded), then
    /// aborts what is left.
    fn close_all(&mut self, sink: &mut dyn EventSink) -> anyhow::Result<()> {
        self.begin_stop(Instant::now());
        let close_end = Instant::now() + CLOSE_PHASE;
        while self.live > 0 && Instant::now() < close_end {
            self.turn(close_end)?;
            self.progress(sink, false)?;
        }
        if self.live > 0 {
            for id in 0..self.slots.len() {
                if self.slots[id].link.state == State::Closing {
                    self.end_open(id);
                }
                self.abort(id);
            }
            let abort_end = Instant::now() + ABORT_PHASE;
            while self.live > 0 && Instant::now() < abort_end {
                self.turn(abort_end)?;
            }
        }
        for slot in &mut self.slots {
            if slot.link.fd >= 0 {
                close_fd(slot.link.fd);
                slot.link.fd = -1;
            }
        }
        Ok(())
    }

    /// One loop turn: expire deadlines, submit sends, wait for completions (at most until
    /// `wake_at`), handle them.
    fn turn(&mut self, wake_at: Instant) -> anyhow::Result<()> {
        let now = Instant::now();
        self.expire_deadlines(now);
        self.flush_sends();
        let mut wake_at = wake_at;
        for queue in [&self.connect_deadlines, &self.close_deadlines] {
            if let Some(timer) = queue.front() {
                wake_at = wake_at.min(timer.at);
            }
        }
        let timeout = wake_at.saturating_duration_since(now).min(MAX_WAIT);
        let mut completions = std::mem::take(&mut self.completions);
        self.reactor
            .wait(timeout, &mut completions)
            .context("io_uring wait")?;
        let now = Instant::now();
        let now_ns = realtime_ns();
        for completion in completions.drain(..) {
            self.complete(completion, now, now_ns);
        }
        self.completions = completions;
        self.flush_sends();
        Ok(())
    }

    fn progress(&mut self, sink: &mut dyn EventSink, force: bool) -> anyhow::Result<()> {
        let now = Instant::now();
        if !force && now < self.next_progress {
            return Ok(());
        }
        self.next_progress = now + PROGRESS_EVERY;
        sink.send(WorkerEvent::Progress(Box::new(Snapshot {
            elapsed_s: now
                .saturating_duration_since(self.params.epoch)
                .as_secs_f64(),
            counters: self.tally.counters,
            latency: self.tally.latency.prometheus_buckets(),
        })))
    }

    fn report(
        &self,
        ramp_seconds: f64,
        hold_seconds: f64,
        channel_subscribers: Vec<u64>,
    ) -> WorkerReport {
        let epoch = self.params.epoch;
        let since_epoch = |t: Instant| t.saturating_duration_since(epoch).as_secs_f64();
        WorkerReport {
            counters: self.tally.counters,
            ramp_seconds,
            hold_seconds,
            first_message_at_s: self.tally.first_message.map(since_epoch),
            last_message_at_s: self.tally.last_message.map(since_epoch),
            elapsed_s: since_epoch(Instant::now()),
            latency: self.tally.latency.to_wire(),
            connect_latency: self.tally.connect_latency.to_wire(),
            reconnect_latency: self.tally.reconnect_latency.to_wire(),
            ticks: self.tally.ticks.arrivals().to_vec(),
            channel_subscribers,
            usage: self.usage,
        }
    }

    /// Open connections per channel number (`index % channels`).
    fn channel_subscribers(&self) -> Vec<u64> {
        let channels = self.params.channels.clamp(1, MAX_TRACKED_CHANNELS);
        let mut counts = vec![0u64; channels];
        for slot in &self.slots {
            if slot.link.state == State::Open {
                counts[slot.link.index as usize % channels] += 1;
            }
        }
        counts
    }

    // ----- scenario activity -------------------------------------------------------------

    fn start_scenario(&mut self, now: Instant) {
        match self.params.scenario {
            Scenario::Echo { msg_rate, .. } if msg_rate > 0.0 => {
                let period = Duration::from_secs_f64(1.0 / msg_rate);
                let mut first: Vec<Timer> = Vec::new();
                for (id, slot) in self.slots.iter().enumerate() {
                    if slot.link.state == State::Open {
                        first.push(Timer {
                            at: now + period.mul_f64(self.rng.unit()),
                            id: id as u32,
                            r#gen: slot.link.r#gen,
                        });
                    }
                }
                first.sort_by_key(|t| t.at);
                self.echo_due.extend(first);
            }
            Scenario::Churn { interval, .. } => self.next_churn = Some(now + interval),
            _ => {}
        }
    }

    /// Sends due echo messages and runs a due churn round; returns when to come back.
    fn scenario_step(&mut self, now: Instant) -> Instant {
        let mut wake_at = now + MAX_WAIT;
        match self.params.scenario {
            Scenario::Echo { msg_rate, size } if msg_rate > 0.0 => {
                let period = Duration::from_secs_f64(1.0 / msg_rate);
                while let Some(timer) = self.echo_due.front().copied() {
                    if timer.at > now {
                        wake_at = wake_at.min(timer.at);
                        break;
                    }
                    self.echo_due.pop_front();
                    if let Some(id) = self.current(timer.id, timer.r#gen)
                        && self.slots[id].link.state == State::Open
                    {
                        self.send_echo(id, size);
                        let next = timer.at + period;
                        self.echo_due.push_back(Timer {
                            at: if next < now { now + period } else { next },
                            ..timer
                        });
                    }
                }
            }
            Scenario::Churn { interval, fraction } => {
                if let Some(due) = self.next_churn {
                    // A round at the very end would close connections the stop then
                    // keeps closed: rounds run only inside the measured phase.
                    if due >= self.measure_end {
                        self.next_churn = None;
                    } else if due <= now {
                        self.churn_round(fraction, now);
                        self.next_churn = Some(due + interval);
                    }
                    wake_at = wake_at.min(self.next_churn.unwrap_or(wake_at));
                }
            }
            _ => {}
        }
        wake_at
    }

    fn send_echo(&mut self, id: usize, size: usize) {
        let link = &mut self.slots[id].link;
        self.body.clear();
        write_body(
            &mut self.body,
            u64::from(link.echo_seq),
            realtime_ns(),
            size,
        );
        link.echo_seq = link.echo_seq.wrapping_add(1);
        link.queue_frame(&mut self.pool, &mut self.rng, OpCode::Text, &self.body);
        self.tally.counters.echo_sent += 1;
        self.dirty.push(id as u32);
    }

    /// Closes `fraction` of the open connections, picked at random, to reopen them.
    fn churn_round(&mut self, fraction: f64, now: Instant) {
        let open = self.tally.counters.open;
        let wanted = (open as f64 * fraction).round() as u64;
        let slots = self.slots.len() as u64;
        let mut attempts = wanted * 8 + 64;
        let mut chosen = 0;
        while chosen < wanted && attempts > 0 && slots > 0 {
            attempts -= 1;
            let id = self.rng.below(slots) as usize;
            let link = &mut self.slots[id].link;
            if link.state != State::Open || link.has(flag::REOPEN) {
                continue;
            }
            link.flags |= flag::REOPEN;
            self.tally.counters.churn_closed += 1;
            self.graceful_close(id, now);
            chosen += 1;
        }
    }

    // ----- connection lifecycle ------------------------------------------------------------

    /// Starts connection `index` in a new slot, or in slot `reuse` (a reopening).
    fn start_connect(&mut self, index: usize, reuse: Option<usize>, reconnect: bool, now: Instant) {
        let assignment = self.plan.assign(index);
        let fd = match tcp_socket_bound(IpAddr::V4(assignment.source), false) {
            Ok(fd) => fd.into_raw_fd(),
            Err(err) => {
                let why = ConnectFailure::from_errno(err.raw_os_error().unwrap_or(0));
                self.tally.counters.connect_errors.count(why, 1);
                if reconnect {
                    self.tally.counters.reconnect_failures += 1;
                }
                if let Some(id) = reuse {
                    self.free_slot(id);
                }
                return;
            }
        };
        let id = reuse.unwrap_or_else(|| self.alloc());
        let key = generate_key(self.rng.next_u64());
        let request = if self.params.deflate {
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
        link.r#gen = (link.r#gen + 1) & GEN_MASK;
        link.fd = fd;
        link.index = index as u32;
        link.state = State::Connecting;
        link.flags = flag::CONNECT_IN_FLIGHT | if reconnect { flag::RECONNECT } else { 0 };
        link.echo_seq = 0;
        link.seq = Default::default();
        link.messages = 0;
        link.handshake = Some(Box::new(Handshake {
            key,
            response: Vec::new(),
            started: now,
        }));
        link.queue_raw(&mut self.pool, &request);
        let r#gen = link.r#gen;
        self.reactor.connect(fd, assignment.dest, id as u32, r#gen);
        self.tally.in_flight += 1;
        self.connect_deadlines.push_back(Timer {
            at: now + self.params.connect_timeout,
            id: id as u32,
            r#gen,
        });
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
        slot.link.state = State::Free;
        slot.link.flags = 0;
        slot.link.fd = -1;
        slot.decoder = Decoder::new(Role::Client, MAX_MESSAGE_BYTES);
        self.free.push(id as u32);
        self.live -= 1;
    }

    /// The slot a completion or timer is for, if it is still the same connection.
    fn current(&self, id: u32, r#gen: u32) -> Option<usize> {
        let link = &self.slots.get(id as usize)?.link;
        (link.state != State::Free && link.r#gen == (r#gen & GEN_MASK)).then_some(id as usize)
    }

    /// A connect or handshake failed (or timed out): count it once and end the attempt.
    fn fail_setup(&mut self, id: usize, why: ConnectFailure) {
        let link = &mut self.slots[id].link;
        if !matches!(link.state, State::Connecting | State::Handshaking) {
            return;
        }
        self.tally.counters.connect_errors.count(why, 1);
        if link.has(flag::RECONNECT) {
            self.tally.counters.reconnect_failures += 1;
        }
        self.tally.in_flight -= 1;
        link.state = State::Done;
        link.handshake = None;
        self.abort(id);
    }

    /// An open (or closing) connection ended.
    fn end_open(&mut self, id: usize) {
        let link = &mut self.slots[id].link;
        if !matches!(link.state, State::Open | State::Closing) {
            return;
        }
        self.tally.counters.open -= 1;
        if link.has(flag::AWAITING) {
            link.flags &= !flag::AWAITING;
            self.tally.awaiting = self.tally.awaiting.saturating_sub(1);
        }
        link.state = State::Done;
    }

    /// `shutdown` the socket so every pending operation on it completes.
    fn abort(&mut self, id: usize) {
        let link = &mut self.slots[id].link;
        let pending = flag::RECV_ARMED | flag::CONNECT_IN_FLIGHT | flag::SEND_IN_FLIGHT;
        if link.fd >= 0 && !link.has(flag::ABORTED) && link.flags & pending != 0 {
            shutdown_socket(link.fd);
            link.flags |= flag::ABORTED;
        }
    }

    /// Sends close 1000 and waits (bounded) for the server to end the connection.
    fn graceful_close(&mut self, id: usize, now: Instant) {
        let link = &mut self.slots[id].link;
        link.queue_close(&mut self.pool, &mut self.rng, code::NORMAL);
        link.state = State::Closing;
        self.close_deadlines.push_back(Timer {
            at: now + CLOSE_GRACE,
            id: id as u32,
            r#gen: link.r#gen,
        });
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
        if link.fd >= 0 {
            close_fd(link.fd);
            link.fd = -1;
        }
        link.drop_outbox(&mut self.pool);
        if link.has(flag::REOPEN) && !self.stopping {
            let index = link.index as usize;
            self.start_connect(index, Some(id), true, now);
        } else {
            self.free_slot(id);
        }
    }

    /// Stops everything: open connections close with 1000, attempts in progress end.
    fn begin_stop(&mut self, now: Instant) {
        self.stopping = true;
        self.echo_due.clear();
        self.next_churn = None;
        for id in 0..self.slots.len() {
            let link = &self.slots[id].link;
            let churning = matches!(link.state, State::Closing | State::Done)
                && link.has(flag::REOPEN)
                || matches!(link.state, State::Connecting | State::Handshaking)
                    && link.has(flag::RECONNECT);
            if churning {
                self.tally.counters.churn_interrupted += 1;
            }
            match self.slots[id].link.state {
                State::Open => self.graceful_close(id, now),
                State::Connecting | State::Handshaking => {
                    self.tally.in_flight -= 1;
                    let link = &mut self.slots[id].link;
                    link.state = State::Done;
                    link.handshake = None;
                    self.abort(id);
                    self.release_if_done(id, now);
                }
                _ => {}
            }
        }
    }

    fn expire_deadlines(&mut self, now: Instant) {
        while let Some(timer) = self.connect_deadlines.front().copied() {
            if timer.at > now {
                break;
            }
            self.connect_deadlines.pop_front();
            if let Some(id) = self.current(timer.id, timer.r#gen) {
                self.fail_setup(id, ConnectFailure::Timeout);
                self.release_if_done(id, now);
            }
        }
        while let Some(timer) = self.close_deadlines.front().copied() {
            if timer.at > now {
                break;
            }
            self.close_deadlines.pop_front();
            if let Some(id) = self.current(timer.id, timer.r#gen)
                && self.slots[id].link.state == State::Closing
            {
                self.end_open(id);
                self.abort(id);
                self.release_if_done(id, now);
            }
        }
    }

    // ----- completions -----------------------------------------------------------------

    fn complete(&mut self, completion: Completion, now: Instant, now_ns: u64) {
        match completion {
            Completion::Connect {
                conn,
                generation: r#gen,
                result,
            } => {
                let Some(id) = self.current(conn, r#gen) else {
                    return;
                };
                let link = &mut self.slots[id].link;
                link.flags &= !flag::CONNECT_IN_FLIGHT;
                if link.state == State::Connecting {
                    match result {
                        Ok(()) => {
                            let _ = set_nodelay(link.fd);
                            self.reactor.arm_recv(link.fd, conn, link.r#gen);
                            link.flags |= flag::RECV_ARMED;
                            link.state = State::Handshaking;
                            self.dirty.push(conn);
                        }
                        Err(errno) => self.fail_setup(id, ConnectFailure::from_errno(errno)),
                    }
                }
                self.release_if_done(id, now);
            }
            Completion::Recv {
                conn,
                generation: r#gen,
                result,
                more,
            } => {
                let Some(id) = self.current(conn, r#gen) else {
                    if let Ok(buf) = result {
                        self.reactor.recycle(buf.bid);
                    }
                    return;
                };
                if !more {
                    self.slots[id].link.flags &= !flag::RECV_ARMED;
                }
                match result {
                    Ok(buf) if buf.len == 0 => self.on_recv_end(id, None),
                    Ok(buf) => {
                        self.on_bytes(id, buf, now, now_ns);
                        self.reactor.recycle(buf.bid);
                        if !more {
                            self.rearm_recv(id);
                        }
                    }
                    Err(libc::ENOBUFS) => {
                        self.tally.counters.recv_enobufs += 1;
                        self.rearm_recv(id);
                    }
                    Err(errno) => self.on_recv_end(id, Some(errno)),
                }
                self.release_if_done(id, now);
            }
            Completion::Send {
                conn,
                generation: r#gen,
                result,
            } => {
                let Some(id) = self.current(conn, r#gen) else {
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
                            self.dirty.push(conn);
                        }
                    }
                    Err(errno) => self.on_send_error(id, errno),
                }
                self.release_if_done(id, now);
            }
            Completion::Accept { .. } | Completion::Wake => {}
        }
    }

    fn rearm_recv(&mut self, id: usize) {
        let link = &mut self.slots[id].link;
        let wants = matches!(
            link.state,
            State::Handshaking | State::Open | State::Closing
        );
        if wants && !link.has(flag::RECV_ARMED) && !link.has(flag::ABORTED) {
            self.reactor.arm_recv(link.fd, id as u32, link.r#gen);
            link.flags |= flag::RECV_ARMED;
        }
    }

    /// The receive side ended: EOF (`None`) or an error.
    fn on_recv_end(&mut self, id: usize, errno: Option<i32>) {
        match self.slots[id].link.state {
            State::Handshaking => {
                let why = errno.map_or(ConnectFailure::Reset, ConnectFailure::from_errno);
                self.fail_setup(id, why);
            }
            State::Open => {
                self.tally.counters.closed_by_server += 1;
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

    fn on_send_error(&mut self, id: usize, errno: i32) {
        match self.slots[id].link.state {
            State::Handshaking => self.fail_setup(id, ConnectFailure::from_errno(errno)),
            State::Open => {
                self.tally.counters.closed_by_server += 1;
                self.end_open(id);
                self.abort(id);
            }
            State::Closing => {
                self.end_open(id);
                self.abort(id);
            }
            _ => {}
        }
        self.slots[id].link.drop_outbox(&mut self.pool);
    }

    /// Received bytes: handshake response or frames.
    fn on_bytes(&mut self, id: usize, buf: RecvBuf, now: Instant, now_ns: u64) {
        let Self {
            reactor,
            params,
            slots,
            tally,
            pool,
            rng,
            ..
        } = self;
        let data = reactor.buffer(buf.bid, buf.len);
        let slot = &mut slots[id];
        let mut ctx = MessageCtx {
            tally,
            pool,
            rng,
            expect_messages: match params.scenario {
                Scenario::Hold { expect_messages } => expect_messages,
                _ => None,
            },
            ticks: params.scenario == Scenario::Tick,
            now,
            now_ns,
        };
        let step = match slot.link.state {
            State::Handshaking => handshake_bytes(slot, data, &mut ctx),
            State::Open | State::Closing => Step::Fed(feed(slot, data, &mut ctx)),
            _ => Step::Pending,
        };
        match step {
            Step::Pending | Step::Fed(Ok(())) => {}
            Step::Failed => self.fail_setup(id, ConnectFailure::Handshake),
            Step::Fed(Err(_)) => {
                self.tally.counters.protocol_errors += 1;
                self.end_open(id);
                self.abort(id);
            }
        }
        let link = &mut self.slots[id].link;
        if link.state == State::Open && link.has(flag::CLOSE_RECEIVED) {
            if link.has(flag::SERVER_CLOSED) {
                self.tally.counters.closed_by_server += 1;
            }
            link.state = State::Closing;
            self.close_deadlines.push_back(Timer {
                at: now + CLOSE_GRACE,
                id: id as u32,
                r#gen: link.r#gen,
            });
        }
        if self.slots[id].link.wants_send() {
            self.dirty.push(id as u32);
        }
    }

    /// Submits the next send of every connection that has bytes waiting and none in flight.
    fn flush_sends(&mut self) {
        for id in std::mem::take(&mut self.dirty) {
            let link = &mut self.slots[id as usize].link;
            if !matches!(
                link.state,
                State::Handshaking | State::Open | State::Closing
            ) || link.has(flag::SEND_IN_FLIGHT)
            {
                continue;
            }
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
            let rest = &out.sending[out.offset..];
            let iov = [libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: rest.len(),
            }];
            // The bytes stay in `out.sending`, untouched until the send completes (new
            // frames go to `out.queued`; the outbox is only dropped when no send is in
            // flight, and the reactor is dropped before the slots).
            self.reactor.send_vectored(link.fd, id, link.r#gen, &iov);
            link.flags |= flag::SEND_IN_FLIGHT;
        }
    }
}

/// What received bytes did to a connection.
enum Step {
    /// Nothing decided yet.
    Pending,
    /// The handshake failed.
    Failed,
    /// Frames were decoded (or the protocol was broken).
    Fed(Result<(), ProtocolError>),
}

/// Feeds frame bytes to the connection's decoder.
fn feed(slot: &mut Slot, bytes: &mut [u8], ctx: &mut MessageCtx<'_>) -> Result<(), ProtocolError> {
    let Slot { decoder, link } = slot;
    decoder.feed(bytes, &mut |message| link.on_message(message, ctx))
}

/// Handshake response bytes: parse the 101; once complete, open the connection and feed
/// whatever followed the response.
fn handshake_bytes(slot: &mut Slot, data: &mut [u8], ctx: &mut MessageCtx<'_>) -> Step {
    let link = &mut slot.link;
    let Some(hs) = link.handshake.as_mut() else {
        return Step::Failed;
    };
    let status = if hs.response.is_empty() {
        parse_response(data, &hs.key)
    } else {
        hs.response.extend_from_slice(data);
        parse_response(&hs.response, &hs.key)
    };
    let consumed = match status {
        Ok(ClientHandshakeStatus::Partial) => {
            if hs.response.is_empty() {
                hs.response.extend_from_slice(data);
            }
            return Step::Pending;
        }
        Err(_) => return Step::Failed,
        Ok(ClientHandshakeStatus::Done { consumed }) => consumed,
    };
    let Some(hs) = link.handshake.take() else {
        return Step::Failed;
    };
    let mut hs = *hs;
    let head = if hs.response.is_empty() {
        &data[..consumed]
    } else {
        &hs.response[..consumed]
    };
    if accepted_extension(head).is_some() {
        slot.decoder.enable_deflate();
    }
    let link = &mut slot.link;
    let setup_ns = ctx.now.saturating_duration_since(hs.started).as_nanos() as u64;
    open_connection(link, ctx.tally, ctx.expect_messages, setup_ns);
    let leftover: &mut [u8] = if hs.response.is_empty() {
        &mut data[consumed..]
    } else {
        &mut hs.response[consumed..]
    };
    if leftover.is_empty() {
        return Step::Fed(Ok(()));
    }
    Step::Fed(feed(slot, leftover, ctx))
}

/// Bookkeeping of a successful handshake.
fn open_connection(link: &mut Link, tally: &mut Tally, expect: Option<u64>, setup_ns: u64) {
    tally.in_flight -= 1;
    tally.counters.connected += 1;
    tally.counters.open += 1;
    if link.has(flag::RECONNECT) {
        tally.counters.reconnects += 1;
        tally.reconnect_latency.record_ns(setup_ns);
    } else {
        tally.connect_latency.record_ns(setup_ns);
    }
    link.state = State::Open;
    match expect {
        Some(0) => {
            link.flags |= flag::COMPLETE;
            tally.counters.conns_complete += 1;
        }
        Some(_) => {
            link.flags |= flag::AWAITING;
            tally.awaiting += 1;
        }
        None => {}
    }
}
