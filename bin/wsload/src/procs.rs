//! Workers and how the coordinator talks to them. With `--procs 1` the worker is a thread
//! of the same process (events over a channel, stop through a flag). With `--procs P` the
//! parent re-executes itself P times as hidden `--worker I/P` processes (one process may
//! hold at most ~20,000 fds here): a worker writes its events as JSON lines on stdout,
//! stops when it reads `stop` (or EOF) on stdin, and dies with the parent
//! (`PR_SET_PDEATHSIG`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::engine::{self, EventSink};
use crate::scenario::WorkerParams;
use crate::wire::WorkerEvent;

/// A worker's event, or `None` once the worker has ended (its channel or stdout closed).
pub type Envelope = (usize, Option<WorkerEvent>);

/// A running worker.
pub enum WorkerHandle {
    /// A thread of this process.
    Thread {
        /// Set to end the measured phase.
        stop: Arc<AtomicBool>,
        /// The engine thread.
        join: Option<JoinHandle<anyhow::Result<()>>>,
    },
    /// A child process.
    Process {
        /// The child.
        child: Child,
        /// Its stdin (`stop` lines).
        stdin: Option<ChildStdin>,
    },
}

impl WorkerHandle {
    /// Asks the worker to end its measured phase, close its connections and report.
    pub fn stop(&mut self) {
        match self {
            Self::Thread { stop, .. } => stop.store(true, Ordering::Relaxed),
            Self::Process { stdin, .. } => {
                if let Some(pipe) = stdin {
                    let _ = pipe.write_all(b"stop\n").and_then(|()| pipe.flush());
                }
            }
        }
    }

    /// Kills a worker process (a thread is only asked to stop).
    pub fn kill(&mut self) {
        match self {
            Self::Thread { stop, .. } => stop.store(true, Ordering::Relaxed),
            Self::Process { child, .. } => {
                let _ = child.kill();
            }
        }
    }

    /// Waits for the worker to end; returns its error, if any.
    pub fn finish(&mut self) -> Option<String> {
        match self {
            Self::Thread { join, .. } => match join.take()?.join() {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(format!("{err:#}")),
                Err(_) => Some("the worker thread panicked".to_owned()),
            },
            Self::Process { child, stdin } => {
                drop(stdin.take());
                match child.wait() {
                    Ok(status) if status.success() => None,
                    Ok(status) => Some(format!("worker process exited with {status}")),
                    Err(err) => Some(format!("waiting for a worker process: {err}")),
                }
            }
        }
    }
}

/// Events of an in-process worker go straight to the coordinator's channel.
struct ChannelSink {
    index: usize,
    events: Sender<Envelope>,
}

impl EventSink for ChannelSink {
    fn send(&mut self, event: WorkerEvent) -> anyhow::Result<()> {
        // A coordinator that stopped listening is not the worker's failure.
        let _ = self.events.send((self.index, Some(event)));
        Ok(())
    }
}

impl Drop for ChannelSink {
    fn drop(&mut self) {
        let _ = self.events.send((self.index, None));
    }
}

/// Starts worker 0 of a single-process run on its own thread.
pub fn spawn_thread(
    params: WorkerParams,
    events: Sender<Envelope>,
) -> anyhow::Result<WorkerHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let join = std::thread::Builder::new()
        .name("wsload-worker".to_owned())
        .spawn(move || {
            let mut sink = ChannelSink { index: 0, events };
            engine::run(&params, &flag, &mut sink)
        })
        .context("starting the worker thread")?;
    Ok(WorkerHandle::Thread {
        stop,
        join: Some(join),
    })
}

/// Starts worker `index` of `count` as a child process running this executable with the
/// same arguments plus `--worker index/count --epoch-ms epoch_ms`.
pub fn spawn_process(
    index: usize,
    count: usize,
    epoch_ms: u128,
    events: Sender<Envelope>,
) -> anyhow::Result<WorkerHandle> {
    let exe = std::env::current_exe().context("locating wsload's own executable")?;
    let parent = std::process::id();
    let mut command = Command::new(exe);
    command
        .args(std::env::args_os().skip(1))
        .arg("--worker")
        .arg(format!("{index}/{count}"))
        .arg("--epoch-ms")
        .arg(epoch_ms.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe prctl and getppid.
    unsafe {
        command.pre_exec(move || die_with_parent(parent));
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting worker {index}"))?;
    let stdout = child.stdout.take().context("worker has no stdout")?;
    let stdin = child.stdin.take();
    std::thread::Builder::new()
        .name(format!("wsload-relay-{index}"))
        .spawn(move || relay_worker_lines(index, stdout, &events))
        .context("starting a relay thread")?;
    Ok(WorkerHandle::Process { child, stdin })
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

/// Forwards a worker's event lines to the coordinator; other lines go to stderr.
fn relay_worker_lines(index: usize, stdout: std::process::ChildStdout, events: &Sender<Envelope>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else {
            break;
        };
        match serde_json::from_str::<WorkerEvent>(&line) {
            Ok(event) => {
                if events.send((index, Some(event))).is_err() {
                    return;
                }
            }
            Err(_) => eprintln!("[wsload worker {index}] {line}"),
        }
    }
    let _ = events.send((index, None));
}

/// The worker side of a `--procs` run: events as JSON lines on stdout, `stop` on stdin.
pub fn run_worker(params: &WorkerParams) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("wsload-stdin".to_owned())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(line) if line.trim() != "stop" => {}
                    _ => break,
                }
            }
            flag.store(true, Ordering::Relaxed);
        })
        .context("starting the stdin thread")?;
    engine::run(params, &stop, &mut StdoutSink)
}

/// Events of a worker process: one JSON line each on stdout.
struct StdoutSink;

impl EventSink for StdoutSink {
    fn send(&mut self, event: WorkerEvent) -> anyhow::Result<()> {
        let line = serde_json::to_string(&event)?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_in_the_past() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let epoch = epoch_from_unix_ms(Some(now_ms - 2_000));
        assert!(epoch <= Instant::now());
        assert!(epoch_from_unix_ms(Some(u64::MAX)) <= Instant::now());
        assert!(epoch_from_unix_ms(None) <= Instant::now());
    }

    #[test]
    fn channel_sink_announces_the_end() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut sink = ChannelSink {
            index: 3,
            events: tx,
        };
        sink.send(WorkerEvent::RampDone { connected: 1 }).unwrap();
        drop(sink);
        assert_eq!(
            rx.recv().unwrap(),
            (3, Some(WorkerEvent::RampDone { connected: 1 }))
        );
        assert_eq!(rx.recv().unwrap(), (3, None));
        assert!(rx.recv().is_err());
    }
}
