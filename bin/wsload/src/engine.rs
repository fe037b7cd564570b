//! The client engine of one worker: one thread, one `ringcast-uring` reactor and the
//! io_uring glue around the sans-IO [`ClientCore`]. It ramps the connections up at the
//! paced rate (bounded connects in flight, each bound to its source IP with the port chosen
//! at connect time), runs the scenario's measured phase (idle hold, echo sends, churn
//! rounds), closes everything with 1000 and reports. The core decides; this file performs
//! its [`Action`]s (sockets, connects, multishot receives into the reactor's provided buffer
//! ring, vectored sends, shutdowns, closes) and reports the completions back.

use std::net::IpAddr;
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ringcast_uring::{
    Completion, Reactor, ReactorConfig, close_fd, set_nodelay, shutdown_socket, tcp_socket_bound,
};

use crate::addr_plan::AddrPlan;
use crate::client_core::{Action, ClientConfig, ClientCore, Received, SlotRef};
use crate::payload::realtime_ns;
use crate::scenario::{Scenario, WorkerParams};
use crate::self_usage::{Usage, UsagePoint};
use crate::tls_client;
use crate::wire::{Snapshot, WorkerEvent};

/// Longest single wait in the reactor (also how fast a stop request is noticed).
const MAX_WAIT: Duration = Duration::from_millis(100);
/// How long the final close phase may take before the rest is aborted.
const CLOSE_PHASE: Duration = Duration::from_secs(5);
/// How long aborted connections get to finish their in-flight operations.
const ABORT_PHASE: Duration = Duration::from_secs(1);
/// Extra ramp time beyond twice the paced ramp and one connect timeout.
const RAMP_SLACK: Duration = Duration::from_secs(5);
/// How much longer than its deadline the ramp waits for first connects the server
/// deferred (`503` + `Retry-After`) to come back and get in.
const DEFERRED_RAMP_WAIT: Duration = Duration::from_secs(60);
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
/// in-flight operation) before the core whose send buffers those operations reference.
struct Engine<'p> {
    reactor: Reactor,
    core: ClientCore,
    params: &'p WorkerParams,
    /// The socket of every slot (or -1).
    fds: Vec<RawFd>,
    completions: Vec<Completion>,
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
            // A load generator wakes on every completion: gathering would add to the
            // latencies it measures.
            coalesce: Duration::ZERO,
        })
        .context("creating the io_uring reactor")?;
        let seed =
            (params.slot.index as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ realtime_ns();
        let config = ClientConfig {
            scenario: params.scenario,
            deflate: params.deflate,
            connect_timeout: params.connect_timeout,
            epoch: params.epoch,
            resume: params.resume,
            tls_own_names: matches!(params.tls_trust, Some(tls_client::Trust::Any)),
            tls: match (&params.tls_trust, plan.uses_tls()) {
                (Some(trust), true) => Some(tls_client::client_config(
                    trust,
                    params.tls_resume,
                    params.target() as usize,
                )?),
                _ => None,
            },
        };
        Ok(Self {
            reactor,
            core: ClientCore::new(config, plan, params.target() as usize, seed),
            params,
            fds: Vec::with_capacity(params.target() as usize),
            completions: Vec::with_capacity(4096),
            next_progress: Instant::now() + params.scenario.progress_every(),
            usage: Usage::default(),
        })
    }

    fn run(&mut self, stop: &AtomicBool, sink: &mut dyn EventSink) -> anyhow::Result<()> {
        self.usage.start = UsagePoint::now(0);
        self.core.figures_mut().counters.target = self.params.target();
        let ramp_start = Instant::now();
        let ramp_seconds = self.ramp(stop, sink, ramp_start)?;
        let open = self.core.figures().counters.open;
        self.usage.ramp_end = UsagePoint::now(open);
        sink.send(WorkerEvent::RampDone { connected: open })?;
        self.progress(sink, true)?;

        let hold_start = Instant::now();
        self.hold(stop, sink, hold_start)?;
        let hold_seconds = hold_start.elapsed().as_secs_f64();
        self.usage.hold_end = UsagePoint::now(self.core.figures().counters.open);
        let channels = self.params.channels.clamp(1, MAX_TRACKED_CHANNELS);
        let channel_subscribers = self.core.channel_subscribers(channels);
        sink.send(WorkerEvent::HoldDone {
            messages: self.core.figures().counters.messages,
        })?;

        self.close_all(sink)?;
        self.progress(sink, true)?;
        let mut figures = std::mem::take(self.core.figures_mut());
        figures.ramp_seconds = ramp_seconds;
        figures.hold_seconds = hold_seconds;
        figures.elapsed_s = Instant::now()
            .saturating_duration_since(self.params.epoch)
            .as_secs_f64();
        figures.channel_subscribers = channel_subscribers;
        figures.usage = vec![self.usage];
        sink.send(WorkerEvent::Report(Box::new(figures)))
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
                && (self.core.in_flight() as usize) < p.max_in_flight.max(1)
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
                self.core.start_connect(index, now);
                self.perform_actions();
                started += 1;
            }
            let open = self.core.figures().counters.open;
            if self.usage.mid.is_none() && target > 0 && open * 2 >= target {
                self.usage.mid = Some(UsagePoint::now(open));
            }
            let deferred = self.core.deferred_waiting() > 0;
            let deadline = if deferred {
                ramp_deadline + DEFERRED_RAMP_WAIT
            } else {
                ramp_deadline
            };
            if (started >= target && self.core.in_flight() == 0 && !deferred) || now >= deadline {
                break;
            }
            self.turn(wake_at.min(deadline))?;
            self.progress(sink, false)?;
        }
        self.core
            .end_ramp(target.saturating_sub(started), Instant::now());
        self.perform_actions();
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
        self.core
            .start_scenario(hold_start, hold_start + p.duration);
        loop {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) || now >= hold_end {
                return Ok(());
            }
            if let Scenario::Hold {
                expect_messages: Some(_),
            } = scenario
                && self.core.awaiting() == 0
            {
                return Ok(());
            }
            let longest = now + MAX_WAIT;
            let wake_at = self
                .core
                .scenario_step(now, realtime_ns())
                .map_or(longest, |at| at.min(longest));
            self.perform_actions();
            self.turn(wake_at.min(hold_end))?;
            self.progress(sink, false)?;
        }
    }

    /// Closes every connection with 1000, waits for the server's answers (bounded), then
    /// aborts what is left.
    fn close_all(&mut self, sink: &mut dyn EventSink) -> anyhow::Result<()> {
        self.core.begin_stop(Instant::now());
        self.perform_actions();
        let close_end = Instant::now() + CLOSE_PHASE;
        while self.core.live() > 0 && Instant::now() < close_end {
            self.turn(close_end)?;
            self.progress(sink, false)?;
        }
        if self.core.live() > 0 {
            self.core.abort_all();
            self.perform_actions();
            let abort_end = Instant::now() + ABORT_PHASE;
            while self.core.live() > 0 && Instant::now() < abort_end {
                self.turn(abort_end)?;
            }
        }
        for fd in &mut self.fds {
            if *fd >= 0 {
                close_fd(*fd);
                *fd = -1;
            }
        }
        Ok(())
    }

    /// One loop turn: expire deadlines, submit sends, wait for completions (at most until
    /// `wake_at`), handle them.
    fn turn(&mut self, wake_at: Instant) -> anyhow::Result<()> {
        let now = Instant::now();
        self.core.expire(now);
        self.core.flush_sends();
        self.perform_actions();
        let wake_at = self
            .core
            .next_deadline()
            .map_or(wake_at, |at| at.min(wake_at))
            .min(self.next_progress);
        let timeout = wake_at.saturating_duration_since(now).min(MAX_WAIT);
        let mut completions = std::mem::take(&mut self.completions);
        self.reactor
            .wait(timeout, &mut completions)
            .context("io_uring wait")?;
        let now = Instant::now();
        let now_ns = realtime_ns();
        for completion in completions.drain(..) {
            self.complete(completion, now, now_ns);
            self.perform_actions();
        }
        self.completions = completions;
        self.core.flush_sends();
        self.perform_actions();
        Ok(())
    }

    fn progress(&mut self, sink: &mut dyn EventSink, force: bool) -> anyhow::Result<()> {
        let now = Instant::now();
        if !force && now < self.next_progress {
            return Ok(());
        }
        self.next_progress = now + self.params.scenario.progress_every();
        let figures = self.core.figures();
        sink.send(WorkerEvent::Progress(Box::new(Snapshot {
            elapsed_s: now
                .saturating_duration_since(self.params.epoch)
                .as_secs_f64(),
            counters: figures.counters,
            latency: figures.latency.prometheus_buckets(),
        })))
    }

    /// Reports one completion to the core.
    fn complete(&mut self, completion: Completion, now: Instant, now_ns: u64) {
        match completion {
            Completion::Connect {
                conn,
                generation: r#gen,
                result,
            } => {
                if result.is_ok()
                    && let Some(&fd) = self.fds.get(conn as usize)
                {
                    let _ = set_nodelay(fd);
                }
                self.core.on_connect_done(slot(conn, r#gen), result, now);
            }
            Completion::Recv {
                conn,
                generation: r#gen,
                result,
                more,
            } => {
                let at = slot(conn, r#gen);
                match result {
                    Ok(buf) if buf.len == 0 => {
                        self.core.on_recv(at, Received::End, more, now, now_ns);
                        self.reactor.recycle(buf.bid);
                    }
                    Ok(buf) => {
                        let data = self.reactor.buffer(buf.bid, buf.len);
                        self.core
                            .on_recv(at, Received::Bytes(data), more, now, now_ns);
                        self.reactor.recycle(buf.bid);
                    }
                    Err(libc::ENOBUFS) => {
                        self.core
                            .on_recv(at, Received::NoBuffers, more, now, now_ns);
                    }
                    Err(errno) => {
                        self.core
                            .on_recv(at, Received::Error(errno), more, now, now_ns);
                    }
                }
            }
            Completion::Send {
                conn,
                generation: r#gen,
                result,
            } => self.core.on_send_done(slot(conn, r#gen), result, now),
            Completion::Accept { .. } | Completion::Wake => {}
        }
    }

    /// Performs every action the core asked for, in order.
    fn perform_actions(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Connect { slot, source, dest } => {
                    match tcp_socket_bound(IpAddr::V4(source), false) {
                        Ok(fd) => {
                            let fd = fd.into_raw_fd();
                            self.set_fd(slot.id, fd);
                            self.reactor.connect(fd, dest, slot.id, slot.r#gen);
                        }
                        Err(err) => self.core.on_socket_failed(
                            slot,
                            err.raw_os_error().unwrap_or(0),
                            Instant::now(),
                        ),
                    }
                }
                Action::ArmRecv(slot) => {
                    self.reactor.arm_recv(self.fd(slot.id), slot.id, slot.r#gen);
                }
                Action::Send(slot) => {
                    let rest = self.core.unsent(slot.id);
                    let iov = [libc::iovec {
                        iov_base: rest.as_ptr() as *mut libc::c_void,
                        iov_len: rest.len(),
                    }];
                    // The core keeps these bytes untouched until the send completes, and
                    // the reactor is dropped before the core.
                    let fd = self.fd(slot.id);
                    self.reactor.send_vectored(fd, slot.id, slot.r#gen, &iov);
                }
                Action::Shutdown(id) => {
                    let fd = self.fd(id);
                    if fd >= 0 {
                        shutdown_socket(fd);
                    }
                }
                Action::Close(id) => {
                    let fd = self.fd(id);
                    if fd >= 0 {
                        close_fd(fd);
                        self.set_fd(id, -1);
                    }
                }
            }
        }
    }

    /// The socket of slot `id` (or -1).
    fn fd(&self, id: u32) -> RawFd {
        self.fds.get(id as usize).copied().unwrap_or(-1)
    }

    fn set_fd(&mut self, id: u32, fd: RawFd) {
        let id = id as usize;
        if self.fds.len() <= id {
            self.fds.resize(self.core.slot_count().max(id + 1), -1);
        }
        self.fds[id] = fd;
    }
}

fn slot(id: u32, r#gen: u32) -> SlotRef {
    SlotRef { id, r#gen }
}
