//! The coordinator of a scenario run: starts the workers (a thread, or `--procs` child
//! processes), shows their summed progress, serves `--metrics`, writes `--ready-file` /
//! `--done-file`, drives the measured phase (publisher for `push` and `tick`, a timer for
//! `echo` and `churn`; `hold` workers end by themselves), stops the workers, and merges
//! their reports into the final [`Report`]. Every phase is bounded in time.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};

use crate::addr_plan::AddrPlan;
use crate::cli::{LoadArgs, WorkerSlot};
use crate::delivery_window::{DeliveryWindow, subscribers_per_channel};
use crate::figures::Figures;
use crate::metrics::{self, MetricsBoard};
use crate::procs::{self, Envelope, WorkerHandle};
use crate::progress::ProgressView;
use crate::publisher::{self, PublishMode, PublishPlan, PublishStats};
use crate::report::Report;
use crate::scenario::{Scenario, WorkerParams};
use crate::stats::Counters;
use crate::tls_client::{self, Trust};
use crate::wire::{Snapshot, WorkerEvent};

/// How often the coordinator looks at the clock when no event arrives.
const POLL: Duration = Duration::from_millis(100);
/// After publishing, deliveries are over once the message count stood still this long...
const DRAIN_QUIET: Duration = Duration::from_secs(1);
/// ...or this long has passed.
const DRAIN_MAX: Duration = Duration::from_secs(10);
/// Beyond the run's own bound, before the workers are killed.
const SLACK: Duration = Duration::from_secs(30);

/// How the coordinator publishes (push, tick).
#[derive(Debug, Clone)]
pub struct PublishSpec {
    /// Admin API address.
    pub admin: SocketAddr,
    /// What to publish.
    pub mode: PublishMode,
    /// Publisher threads.
    pub publishers: usize,
    /// Paced push: most deliveries outstanding (`--max-outstanding`).
    pub max_outstanding: Option<u64>,
}

/// One scenario run as the command line asked for it.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Shared load arguments.
    pub load: LoadArgs,
    /// Scenario.
    pub scenario: Scenario,
    /// Publisher, for push and tick.
    pub publish: Option<PublishSpec>,
    /// The exact command line, for the report.
    pub command: String,
}

/// The parameters of worker `slot`.
pub fn worker_params(
    load: &LoadArgs,
    scenario: Scenario,
    slot: WorkerSlot,
    epoch: Instant,
) -> WorkerParams {
    WorkerParams {
        scenario,
        url: load.url.clone(),
        source_ips: load.source_ips.clone(),
        channels: load.channels.max(1),
        connections: load.connections,
        slot,
        rate: load.rate.max(0.0),
        connect_timeout: Duration::from_secs_f64(load.connect_timeout.max(0.001)),
        max_in_flight: load.max_in_flight.max(1),
        duration: Duration::from_secs_f64(load.duration.max(0.0)),
        epoch,
        recv_buffers: load.recv_buffers,
        recv_buffer_size: load.recv_buffer_size,
        deflate: load.deflate,
        resume: load.resume,
        tls_trust: match (&load.tls_ca, load.tls_insecure) {
            (Some(ca), _) => Some(Trust::Ca(ca.clone())),
            (None, true) => Some(Trust::Any),
            (None, false) => None,
        },
        tls_resume: !load.tls_no_resume,
    }
}

/// Where the run is.
enum Phase {
    /// Workers are ramping.
    Ramp,
    /// The publisher runs (push, tick).
    Publishing(JoinHandle<PublishStats>),
    /// Publishing is over; waiting for the last deliveries.
    Draining {
        since: Instant,
        quiet_since: Instant,
        messages: u64,
    },
    /// Echo and churn run until `until`; hold workers end by themselves.
    Measuring { until: Option<Instant> },
    /// Workers were told to stop.
    Stopping,
}

/// Runs the scenario and returns the merged report.
pub fn run(spec: &RunSpec) -> anyhow::Result<Report> {
    let load = &spec.load;
    let plan = AddrPlan::new(&load.url, &load.source_ips, load.channels)?;
    if plan.uses_tls() {
        match &load.tls_ca {
            Some(ca) => tls_client::check_ca(ca)?,
            None => ensure!(
                load.tls_insecure,
                "wss:// needs --tls-ca FILE (or --tls-insecure for a throwaway certificate)"
            ),
        }
    }
    let procs = load.procs.max(1);
    let epoch = Instant::now();
    let epoch_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let slots: Vec<WorkerSlot> = (0..procs)
        .map(|index| WorkerSlot {
            index,
            count: procs,
        })
        .collect();
    let targets: Vec<u64> = slots
        .iter()
        .map(|&slot| worker_params(load, spec.scenario, slot, epoch).target())
        .collect();
    let board = Arc::new(MetricsBoard::new(&targets));
    if let Some(addr) = load.metrics {
        let bound = metrics::serve(addr, Arc::clone(&board))?;
        eprintln!("[wsload] metrics on http://{bound}/metrics");
    }

    let (events_tx, events) = mpsc::channel::<Envelope>();
    let mut workers = Vec::with_capacity(procs);
    for &slot in &slots {
        let started = if procs == 1 {
            procs::spawn_thread(
                worker_params(load, spec.scenario, slot, epoch),
                events_tx.clone(),
            )
        } else {
            procs::spawn_process(slot.index, procs, epoch_ms, events_tx.clone())
        };
        match started {
            Ok(worker) => workers.push(worker),
            Err(err) => {
                workers.iter_mut().for_each(WorkerHandle::kill);
                return Err(err);
            }
        }
    }
    drop(events_tx);

    let deadline = epoch + run_bound(load) + SLACK;
    let publish_stop = Arc::new(AtomicBool::new(false));
    let mut snapshots = vec![Snapshot::default(); procs];
    let mut ended = vec![false; procs];
    let mut ramp_done = MarkerFile::new(load.ready_file.as_deref(), procs);
    let mut hold_done = MarkerFile::new(load.done_file.as_deref(), procs);
    let mut reports: Vec<Option<Figures>> = vec![None; procs];
    let mut published = PublishStats::default();
    let mut phase = Phase::Ramp;
    let mut window: Option<Arc<DeliveryWindow>> = None;
    let mut view = ProgressView::new(load.connections as u64, spec.scenario.name());
    loop {
        match events.recv_timeout(POLL) {
            Ok((i, Some(event))) => match event {
                WorkerEvent::Progress(snapshot) => {
                    board.update(i, &snapshot);
                    snapshots[i] = *snapshot;
                }
                WorkerEvent::RampDone { connected } => ramp_done.record(i, connected)?,
                WorkerEvent::HoldDone { messages } => hold_done.record(i, messages)?,
                WorkerEvent::Report(report) => reports[i] = Some(*report),
            },
            Ok((i, None)) => {
                ended[i] = true;
                ramp_done.skip(i)?;
                hold_done.skip(i)?;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let mut total = Counters::default();
        snapshots.iter().for_each(|s| total.add(&s.counters));
        view.update(epoch.elapsed().as_secs_f64(), &total);
        if let Some(window) = &window {
            window.received(total.messages);
        }
        let now = Instant::now();
        phase = match phase {
            Phase::Ramp if ramp_done.complete() => match &spec.publish {
                Some(publish) => {
                    let plan = publish_plan(&plan, publish, load)?;
                    window.clone_from(&plan.window);
                    let stop = Arc::clone(&publish_stop);
                    Phase::Publishing(
                        std::thread::Builder::new()
                            .name("wsload-publisher".to_owned())
                            .spawn(move || publisher::run(&plan, &stop))
                            .context("starting the publisher")?,
                    )
                }
                None if spec.scenario.ends_itself() => Phase::Measuring { until: None },
                None => Phase::Measuring {
                    until: Some(now + Duration::from_secs_f64(load.duration.max(0.0))),
                },
            },
            Phase::Publishing(handle) if handle.is_finished() => {
                published = handle.join().unwrap_or_default();
                Phase::Draining {
                    since: now,
                    quiet_since: now,
                    messages: total.messages,
                }
            }
            Phase::Draining {
                since,
                quiet_since,
                messages,
            } => {
                let quiet_since = if total.messages != messages {
                    now
                } else {
                    quiet_since
                };
                if now.duration_since(quiet_since) >= DRAIN_QUIET
                    || now.duration_since(since) >= DRAIN_MAX
                {
                    workers.iter_mut().for_each(WorkerHandle::stop);
                    Phase::Stopping
                } else {
                    Phase::Draining {
                        since,
                        quiet_since,
                        messages: total.messages,
                    }
                }
            }
            Phase::Measuring { until: Some(until) } if now >= until => {
                workers.iter_mut().for_each(WorkerHandle::stop);
                Phase::Stopping
            }
            other => other,
        };
        if now >= deadline {
            eprintln!("[wsload] workers overran their time bound; killing them");
            publish_stop.store(true, std::sync::atomic::Ordering::Relaxed);
            workers.iter_mut().for_each(WorkerHandle::kill);
            break;
        }
        if ended.iter().all(|&e| e) {
            break;
        }
    }
    view.finish();
    if let Phase::Publishing(handle) = phase {
        publish_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        published = handle.join().unwrap_or_default();
    }
    for (i, worker) in workers.iter_mut().enumerate() {
        if let Some(err) = worker.finish() {
            eprintln!("[wsload] worker {i}: {err}");
        }
    }
    let missing_workers: Vec<usize> = (0..procs).filter(|&i| reports[i].is_none()).collect();
    let merged = Figures::merged(reports.iter().flatten());
    let mut report =
        Report::from_figures(spec.scenario.name(), spec.command.clone(), procs, &merged);
    report.missing_workers = missing_workers;
    match spec.scenario {
        Scenario::Push { .. } => report.add_push(&merged, &published),
        Scenario::Tick => report.add_tick(&merged, &published),
        Scenario::Echo { .. } => report.add_echo(&merged),
        Scenario::Churn { .. } => report.add_churn(&merged),
        Scenario::Hold { .. } => {}
    }
    if load.resume {
        report.add_resume(&merged);
    }
    Ok(report)
}

fn publish_plan(
    plan: &AddrPlan,
    publish: &PublishSpec,
    load: &LoadArgs,
) -> anyhow::Result<PublishPlan> {
    let channels = match publish.mode {
        PublishMode::Tick => 1,
        PublishMode::Push { .. } => plan.channels(),
    };
    let window = publish.max_outstanding.map(|limit| {
        let subscribers = subscribers_per_channel(load.connections, channels);
        Arc::new(DeliveryWindow::new(limit, subscribers))
    });
    Ok(PublishPlan {
        admin: publish.admin,
        channels: (0..channels).map(|ch| plan.channel_name(ch)).collect(),
        mode: publish.mode,
        duration: Duration::from_secs_f64(load.duration.max(0.0)),
        publishers: publish.publishers,
        window,
    })
}

/// The longest a run may take by its own rules: ramp (at its deadline), measured phase,
/// drain and close.
fn run_bound(load: &LoadArgs) -> Duration {
    let rate = if load.rate > 0.0 { load.rate } else { 1000.0 };
    let ramp = 2.0 * load.connections as f64 / rate + 2.0 * load.connect_timeout.max(0.0) + 5.0;
    let after = DRAIN_MAX.as_secs_f64() + 10.0;
    Duration::from_secs_f64(ramp + load.duration.max(0.0) + after)
}

/// A file written with the sum of the workers' values once every worker has reported one
/// (workers that ended without reporting count as zero).
struct MarkerFile<'a> {
    path: Option<&'a Path>,
    values: Vec<Option<u64>>,
    written: bool,
}

impl<'a> MarkerFile<'a> {
    fn new(path: Option<&'a Path>, workers: usize) -> Self {
        Self {
            path,
            values: vec![None; workers],
            written: false,
        }
    }

    fn complete(&self) -> bool {
        self.values.iter().all(Option::is_some)
    }

    fn record(&mut self, worker: usize, value: u64) -> anyhow::Result<()> {
        if let Some(slot) = self.values.get_mut(worker) {
            *slot = Some(value);
        }
        self.write_when_complete()
    }

    /// Worker `worker` ended; if it never reported, it counts as zero.
    fn skip(&mut self, worker: usize) -> anyhow::Result<()> {
        if let Some(slot @ None) = self.values.get_mut(worker) {
            *slot = Some(0);
        }
        self.write_when_complete()
    }

    fn write_when_complete(&mut self) -> anyhow::Result<()> {
        if self.written || !self.complete() {
            return Ok(());
        }
        self.written = true;
        match self.path {
            Some(path) => write_marker_file(path, self.values.iter().flatten().sum()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_file_waits_for_every_worker() {
        let path = std::env::temp_dir().join(format!("wsload-marker-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut marker = MarkerFile::new(Some(&path), 3);
        marker.record(1, 5).unwrap();
        marker.skip(2).unwrap();
        assert!(!path.exists());
        assert!(!marker.complete());
        marker.record(0, 7).unwrap();
        assert!(marker.complete());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "12\n");
        std::fs::remove_file(&path).unwrap();
        marker.record(0, 9).unwrap();
        assert!(!path.exists(), "written once only");
        MarkerFile::new(None, 1).record(0, 1).unwrap();
    }
}
