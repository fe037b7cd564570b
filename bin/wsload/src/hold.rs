//! `wsload hold` in one process: ramp the connections up at the paced rate with bounded
//! connects in flight, hold them until `--duration` passes or every connection has its
//! expected messages, close them with 1000 and build the report. Runs on a tokio
//! current-thread runtime with all connection tasks local to it.

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Semaphore, watch};
use tokio::task::LocalSet;
use tokio::time::sleep_until;

use crate::addr_plan::AddrPlan;
use crate::cli::{HoldArgs, WorkerSlot};
use crate::conn::{self, Shared};
use crate::report::HoldReport;
use crate::stats::{ConnectFailure, HoldStats, Progress};

/// How often waits check their condition.
const POLL: Duration = Duration::from_millis(10);
/// Progress period.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Connect rate assumed for the ramp deadline when `--rate 0` (no pacing).
const UNPACED_RATE_FLOOR: f64 = 1000.0;
/// Extra ramp time beyond twice the paced ramp and one connect timeout.
const RAMP_SLACK: Duration = Duration::from_secs(5);
/// Time given to the close handshakes at the end.
const CLOSE_PHASE: Duration = Duration::from_secs(5);
/// Sockets one process may hold on this machine (fd limit 20,000, minus a margin).
const FD_BUDGET_MARGIN: u64 = 100;

/// Receives what a hold run reports while it runs.
pub trait HoldObserver {
    /// Once a second.
    fn progress(&mut self, progress: &Progress) -> anyhow::Result<()>;
    /// Once, when every connection attempt has succeeded or failed.
    fn ramp_done(&mut self, connected: u64) -> anyhow::Result<()>;
    /// Once, when the hold ends and before the connections are closed.
    fn hold_done(&mut self, messages: u64) -> anyhow::Result<()>;
}

/// Progress on stderr, `--ready-file` and `--done-file`: the observer of a single-process run.
pub struct ConsoleObserver<'a> {
    /// Where `ramp_done` writes the connected count.
    pub ready_file: Option<&'a Path>,
    /// Where `hold_done` writes the message count.
    pub done_file: Option<&'a Path>,
}

impl HoldObserver for ConsoleObserver<'_> {
    fn progress(&mut self, progress: &Progress) -> anyhow::Result<()> {
        eprintln!("{}", progress.line());
        Ok(())
    }

    fn ramp_done(&mut self, connected: u64) -> anyhow::Result<()> {
        match self.ready_file {
            Some(path) => write_marker_file(path, connected),
            None => Ok(()),
        }
    }

    fn hold_done(&mut self, messages: u64) -> anyhow::Result<()> {
        match self.done_file {
            Some(path) => write_marker_file(path, messages),
            None => Ok(()),
        }
    }
}

/// Writes `value` to `path` atomically (temporary file, then rename), so a script polling
/// for the file never reads it half-written.
pub fn write_marker_file(path: &Path, value: u64) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, format!("{value}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
}

/// Runs this worker's share of a hold; `epoch` is when the whole run started.
pub fn run(
    args: &HoldArgs,
    slot: WorkerSlot,
    epoch: Instant,
    observer: &mut dyn HoldObserver,
) -> anyhow::Result<HoldReport> {
    let plan = AddrPlan::new(&args.url, &args.source_ips, args.channels)?;
    let target = (slot.index..args.connections).step_by(slot.count).len() as u64;
    let fd_limit = raise_fd_limit();
    if target + FD_BUDGET_MARGIN > fd_limit {
        eprintln!(
            "[wsload] warning: {target} connections in one process but the fd limit is \
             {fd_limit}; use --procs"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let run = HoldRun {
        args,
        plan,
        slot,
        target,
        epoch,
        next_progress: Instant::now() + PROGRESS_EVERY,
    };
    LocalSet::new().block_on(&runtime, run.execute(observer))
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

struct HoldRun<'a> {
    args: &'a HoldArgs,
    plan: AddrPlan,
    slot: WorkerSlot,
    target: u64,
    epoch: Instant,
    next_progress: Instant,
}

impl HoldRun<'_> {
    async fn execute(mut self, observer: &mut dyn HoldObserver) -> anyhow::Result<HoldReport> {
        let args = self.args;
        let connect_timeout = Duration::from_secs_f64(args.connect_timeout.max(0.001));
        let shared = Rc::new(Shared::new(connect_timeout, args.expect_messages));
        let stats = &shared.stats;
        let (stop_tx, stop_rx) = watch::channel(false);

        let rate = f64::from(args.rate) / self.slot.count as f64;
        let paced = Duration::from_secs_f64(
            self.target as f64 / if rate > 0.0 { rate } else { UNPACED_RATE_FLOOR },
        );
        let ramp_start = Instant::now();
        let ramp_deadline = ramp_start + paced * 2 + connect_timeout + RAMP_SLACK;
        let in_flight = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
        let mut started = 0u64;
        let indices = (self.slot.index..args.connections).step_by(self.slot.count);
        for (k, i) in indices.enumerate() {
            if rate > 0.0 {
                let due = ramp_start + Duration::from_secs_f64(k as f64 / rate);
                if due > Instant::now() {
                    sleep_until(due.min(ramp_deadline).into()).await;
                }
            }
            self.tick(stats, observer)?;
            let permit = tokio::select! {
                permit = Arc::clone(&in_flight).acquire_owned() => permit?,
                () = sleep_until(ramp_deadline.into()) => break,
            };
            if Instant::now() >= ramp_deadline {
                break;
            }
            tokio::task::spawn_local(conn::run(
                self.plan.assign(i),
                i as u64,
                Rc::clone(&shared),
                permit,
                stop_rx.clone(),
            ));
            started += 1;
        }
        if started < self.target {
            stats.failed(ConnectFailure::Timeout, self.target - started);
        }
        let target = self.target;
        self.wait_until(stats, observer, ramp_deadline + connect_timeout, |s| {
            s.resolved() >= target
        })
        .await?;
        let ramp_seconds = ramp_start.elapsed().as_secs_f64();
        observer.ramp_done(stats.counts().connected)?;

        let hold_end = Instant::now() + Duration::from_secs_f64(args.duration.max(0.0));
        let expecting = args.expect_messages.is_some();
        self.wait_until(stats, observer, hold_end, |s| {
            expecting && s.awaiting() == 0
        })
        .await?;
        observer.hold_done(stats.counts().messages)?;

        stop_tx.send_replace(true);
        self.wait_until(stats, observer, Instant::now() + CLOSE_PHASE, |s| {
            s.open() == 0 && s.resolved() >= target
        })
        .await?;
        Ok(self.report(stats, ramp_seconds))
    }

    /// Waits until `done` holds or `deadline` passes, reporting progress meanwhile.
    async fn wait_until(
        &mut self,
        stats: &HoldStats,
        observer: &mut dyn HoldObserver,
        deadline: Instant,
        done: impl Fn(&HoldStats) -> bool,
    ) -> anyhow::Result<()> {
        while !done(stats) && Instant::now() < deadline {
            self.tick(stats, observer)?;
            sleep_until((Instant::now() + POLL).min(deadline).into()).await;
        }
        Ok(())
    }

    fn tick(&mut self, stats: &HoldStats, observer: &mut dyn HoldObserver) -> anyhow::Result<()> {
        let now = Instant::now();
        if now < self.next_progress {
            return Ok(());
        }
        self.next_progress = now + PROGRESS_EVERY;
        let elapsed = now.saturating_duration_since(self.epoch).as_secs_f64();
        observer.progress(&stats.progress(self.target, elapsed))
    }

    fn report(&self, stats: &HoldStats, ramp_seconds: f64) -> HoldReport {
        let counts = stats.counts();
        let since_epoch = |t: Instant| t.saturating_duration_since(self.epoch).as_secs_f64();
        let mut report = HoldReport {
            scenario: "hold".to_owned(),
            target: self.target,
            connected: counts.connected,
            failed: counts.connect_errors.total(),
            connect_errors: counts.connect_errors,
            ramp_seconds,
            closed_by_server: counts.closed_by_server,
            protocol_errors: counts.protocol_errors,
            messages: counts.messages,
            bytes: counts.bytes,
            pings: counts.pings,
            seq_gaps: counts.seq_gaps,
            seq_dups: counts.seq_dups,
            conns_complete: counts.conns_complete,
            first_message_at_s: counts.first_message.map(since_epoch),
            last_message_at_s: counts.last_message.map(since_epoch),
            elapsed_s: since_epoch(Instant::now()),
            ..HoldReport::default()
        };
        report.derive_rates();
        report
    }
}
