//! `wsload hold --procs P`: the parent re-executes itself P times as hidden `--worker I/P`
//! processes (one process may hold at most ~20,000 fds here), relays their progress, writes
//! `--ready-file` / `--done-file` once every worker finished its ramp / hold, and merges their
//! reports. Workers
//! talk to the parent in JSON lines on stdout and die with it (`PR_SET_PDEATHSIG`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::cli::HoldArgs;
use crate::hold::{HoldObserver, write_marker_file};
use crate::report::{HoldReport, merge};
use crate::stats::Progress;

/// Progress period of the parent.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Parent wait granularity.
const POLL: Duration = Duration::from_millis(200);
/// Beyond the workers' own bound (ramp + duration + close), before the parent kills them.
const WORKER_SLACK: Duration = Duration::from_secs(30);

/// One line a worker writes on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// Once a second.
    Progress(Progress),
    /// The worker's ramp is over.
    RampDone {
        /// Connections open after the ramp.
        connected: u64,
    },
    /// The worker's hold is over; it is closing its connections.
    HoldDone {
        /// Messages received.
        messages: u64,
    },
    /// The worker's final report.
    Report(HoldReport),
}

/// The observer of a worker process: every event becomes a JSON line on stdout.
pub struct WorkerObserver;

impl WorkerObserver {
    /// Writes one event line.
    pub fn send(&mut self, event: &WorkerEvent) -> anyhow::Result<()> {
        let line = serde_json::to_string(event)?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        Ok(())
    }
}

impl HoldObserver for WorkerObserver {
    fn progress(&mut self, progress: &Progress) -> anyhow::Result<()> {
        self.send(&WorkerEvent::Progress(*progress))
    }

    fn ramp_done(&mut self, connected: u64) -> anyhow::Result<()> {
        self.send(&WorkerEvent::RampDone { connected })
    }

    fn hold_done(&mut self, messages: u64) -> anyhow::Result<()> {
        self.send(&WorkerEvent::HoldDone { messages })
    }
}

/// The run start of a worker as an `Instant`, from the parent's Unix-milliseconds epoch.
pub fn epoch_from_unix_ms(epoch_ms: Option<u64>) -> Instant {
    let now = Instant::now();
    let Some(epoch_ms) = epoch_ms else {
        return now;
    };
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let since_epoch = since_unix.saturating_sub(Duration::from_millis(epoch_ms));
    now.checked_sub(since_epoch).unwrap_or(now)
}

/// What the workers of a `--procs` run produced.
#[derive(Debug)]
pub struct ParentOutcome {
    /// The merged report of the workers that reported.
    pub report: HoldReport,
    /// Workers that ended without a report (crashed or killed).
    pub missing_workers: Vec<usize>,
}

/// Runs `args.procs` workers and merges their reports.
pub fn run_parent(args: &HoldArgs) -> anyhow::Result<ParentOutcome> {
    let procs = args.procs;
    let epoch_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let started = Instant::now();
    let (events_tx, events_rx) = mpsc::channel();
    let mut children = Vec::with_capacity(procs);
    for index in 0..procs {
        let child = spawn_worker(index, procs, epoch_ms);
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                kill_all(&mut children);
                return Err(e);
            }
        };
        let Some(stdout) = child.stdout.take() else {
            kill_all(&mut children);
            bail!("worker {index} has no stdout");
        };
        let events_tx = events_tx.clone();
        thread::spawn(move || relay_worker_lines(index, stdout, &events_tx));
        children.push(child);
    }
    drop(events_tx);

    let deadline = started + worker_bound(args) + WORKER_SLACK;
    let mut progress = vec![Progress::default(); procs];
    let mut ramp_done = MarkerFile::new(args.ready_file.as_deref(), procs);
    let mut hold_done = MarkerFile::new(args.done_file.as_deref(), procs);
    let mut reports: Vec<Option<HoldReport>> = vec![None; procs];
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    loop {
        match events_rx.recv_timeout(POLL) {
            Ok((index, WorkerEvent::Progress(p))) => progress[index] = p,
            Ok((index, WorkerEvent::RampDone { connected })) => {
                ramp_done.record(index, connected)?;
            }
            Ok((index, WorkerEvent::HoldDone { messages })) => hold_done.record(index, messages)?,
            Ok((index, WorkerEvent::Report(report))) => reports[index] = Some(report),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_progress {
            next_progress = Instant::now() + PROGRESS_EVERY;
            let mut total = Progress::default();
            progress.iter().for_each(|p| total.add(p));
            total.elapsed_s = started.elapsed().as_secs_f64();
            total.target = args.connections as u64;
            eprintln!("{}", total.line());
        }
        if Instant::now() >= deadline {
            eprintln!("[wsload] workers overran their time bound; killing them");
            kill_all(&mut children);
            break;
        }
    }
    for child in &mut children {
        let _ = child.wait();
    }
    let missing_workers = (0..procs).filter(|&i| reports[i].is_none()).collect();
    let report = merge(&reports.into_iter().flatten().collect::<Vec<_>>());
    Ok(ParentOutcome {
        report,
        missing_workers,
    })
}

/// A file written with the sum of the workers' values once every worker has reported one.
struct MarkerFile<'a> {
    path: Option<&'a std::path::Path>,
    values: Vec<Option<u64>>,
}

impl<'a> MarkerFile<'a> {
    fn new(path: Option<&'a std::path::Path>, workers: usize) -> Self {
        Self {
            path,
            values: vec![None; workers],
        }
    }

    fn record(&mut self, worker: usize, value: u64) -> anyhow::Result<()> {
        let was_complete = self.values.iter().all(Option::is_some);
        self.values[worker] = Some(value);
        match self.path {
            Some(path) if !was_complete && self.values.iter().all(Option::is_some) => {
                write_marker_file(path, self.values.iter().flatten().sum())
            }
            _ => Ok(()),
        }
    }
}

/// The longest a worker may run by its own rules: ramp + duration + close, with the ramp at
/// its own deadline.
fn worker_bound(args: &HoldArgs) -> Duration {
    let rate = if args.rate > 0 {
        f64::from(args.rate)
    } else {
        1000.0
    };
    let ramp = 2.0 * args.connections as f64 / rate + 2.0 * args.connect_timeout + 5.0;
    Duration::from_secs_f64(ramp + args.duration.max(0.0) + 5.0)
}

fn spawn_worker(index: usize, procs: usize, epoch_ms: u128) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating wsload's own executable")?;
    let parent = std::process::id();
    let mut command = Command::new(exe);
    command
        .args(std::env::args_os().skip(1))
        .arg("--worker")
        .arg(format!("{index}/{procs}"))
        .arg("--epoch-ms")
        .arg(epoch_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe prctl and getppid.
    unsafe {
        command.pre_exec(move || die_with_parent(parent));
    }
    command
        .spawn()
        .with_context(|| format!("starting worker {index}"))
}

/// In the forked child: get SIGKILL when the parent dies, and exit at once if it already has.
fn die_with_parent(parent: u32) -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: getppid has no arguments and cannot fail.
    if unsafe { libc::getppid() } as u32 != parent {
        return Err(std::io::Error::other("parent already exited"));
    }
    Ok(())
}

/// Forwards a worker's event lines to the parent; other lines go to stderr.
fn relay_worker_lines(
    index: usize,
    stdout: std::process::ChildStdout,
    events: &mpsc::Sender<(usize, WorkerEvent)>,
) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else {
            return;
        };
        match serde_json::from_str::<WorkerEvent>(&line) {
            Ok(event) => {
                if events.send((index, event)).is_err() {
                    return;
                }
            }
            Err(_) => eprintln!("[wsload worker {index}] {line}"),
        }
    }
}

fn kill_all(children: &mut [Child]) {
    for child in children {
        let _ = child.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_events_round_trip() {
        let events = [
            WorkerEvent::Progress(Progress {
                connected: 3,
                ..Progress::default()
            }),
            WorkerEvent::RampDone { connected: 7 },
            WorkerEvent::HoldDone { messages: 8 },
            WorkerEvent::Report(HoldReport {
                scenario: "hold".to_owned(),
                messages: 9,
                ..HoldReport::default()
            }),
        ];
        for event in events {
            let line = serde_json::to_string(&event).unwrap();
            assert!(line.contains("\"event\""));
            assert_eq!(serde_json::from_str::<WorkerEvent>(&line).unwrap(), event);
        }
    }

    #[test]
    fn marker_file_waits_for_every_worker() {
        let path = std::env::temp_dir().join(format!("wsload-marker-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut marker = MarkerFile::new(Some(&path), 2);
        marker.record(1, 5).unwrap();
        assert!(!path.exists());
        marker.record(0, 7).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "12\n");
        std::fs::remove_file(&path).unwrap();
        marker.record(0, 9).unwrap();
        assert!(!path.exists(), "written once only");
        MarkerFile::new(None, 1).record(0, 1).unwrap();
    }

    #[test]
    fn foreign_lines_are_not_events() {
        assert!(serde_json::from_str::<WorkerEvent>("{\"scenario\":\"hold\"}").is_err());
        assert!(serde_json::from_str::<WorkerEvent>("panicked at").is_err());
    }

    #[test]
    fn epoch_is_in_the_past() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let epoch = epoch_from_unix_ms(Some(now_ms - 2_000));
        assert!(epoch <= Instant::now());
        assert!(epoch_from_unix_ms(Some(u64::MAX)) <= Instant::now());
    }
}
