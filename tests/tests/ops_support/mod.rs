//! Shared by the ops_* tests: paths into the repository, finding the external checkers
//! (Debian packages on PATH, PyPI tools in the project's .venv), running them with a
//! time limit, and skipping loudly when one is missing (failing instead under CI, where
//! .ci/run installs every one of them), and running a real gateway under a seccomp profile
//! (`seccomp`).

#![allow(dead_code)]

pub mod seccomp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `path` relative to the repository root.
pub fn repo_file(path: &str) -> PathBuf {
    repo().join(path)
}

/// Reads a repository file as text.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The directory of the project's Python venv tools: next to $RINGCAST_PYTHON (set by
/// .ci/run) or `<repo>/.venv/bin`.
pub fn venv_bin() -> PathBuf {
    std::env::var_os("RINGCAST_PYTHON")
        .map(PathBuf::from)
        .and_then(|python| python.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| repo().join(".venv/bin"))
}

/// A tool installed in the venv from PyPI (`pypi` names its package), or None.
pub fn venv_tool(name: &str) -> Option<PathBuf> {
    let path = venv_bin().join(name);
    path.exists().then_some(path)
}

/// A program on PATH (from a Debian package), or None.
pub fn system_tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Reports a checker that is not installed: under CI (CI set, as in .ci/run) that is a
/// failure; elsewhere the test prints why it skips and returns.
pub fn missing(tool: &str, install: &str) {
    let message = format!(
        "SKIP: `{tool}` is not installed ({install}); .ci/run installs it before the tests"
    );
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("{message}");
}

/// Runs `cmd` with stdin closed, killing it (by its pid) after `secs`.
pub fn run(cmd: &mut Command, secs: u64) -> Output {
    let shown = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {shown}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(output) => {
            let _ = waiter.join();
            output.unwrap_or_else(|e| panic!("waiting for {shown}: {e}"))
        }
        Err(_) => {
            // SAFETY: kill(2) on the pid of a child this function started and has not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            let _ = waiter.join();
            panic!("{shown} did not finish within {secs} s");
        }
    }
}

/// Runs `cmd` and asserts it exits 0 and prints nothing on stderr matching a warning:
/// returns stdout.
pub fn run_ok(cmd: &mut Command, secs: u64) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd, secs);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// Text of both output streams.
pub fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A child process killed (by its pid) and reaped when dropped, so a failing assertion
/// never leaves it running.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Creates `<tmp>/ringcast-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> Scratch {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringcast-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    /// A path inside.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `key = value` lines of a sysctl.d / env-style file, comments and blanks skipped; a
/// leading `-` (optional key) is kept on the key.
pub fn key_values(text: &str, separator: char) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once(separator))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}
