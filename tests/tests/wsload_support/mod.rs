//! Shared by the `wsload_*` e2e tests: run `wsload` against a test gateway and read its
//! JSON report, and wait for marker files. Every wsload run is bounded by its own
//! `--duration` and by a hard kill here. (Each test binary uses a part of it.)

#![allow(dead_code)]

use ringcast_tests::programs::binary;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A wsload run in the background.
pub struct Run {
    child: Child,
    started: Instant,
}

impl Run {
    /// Starts `wsload <args>` with stdout captured.
    pub fn start(args: &[&str]) -> Run {
        let child = Command::new(binary("wsload"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting wsload");
        Run {
            child,
            started: Instant::now(),
        }
    }

    /// Waits (at most `secs` since the start) for the run to end; returns its report.
    pub fn report(mut self, secs: u64) -> serde_json::Value {
        let deadline = self.started + Duration::from_secs(secs);
        while self.child.try_wait().expect("try_wait").is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("wsload did not end within {secs} s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = self.child.wait().expect("wsload status");
        let mut text = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut text).expect("wsload output");
        }
        assert!(status.success(), "wsload failed: {status:?}");
        serde_json::from_str(text.lines().last().expect("a report line")).expect("JSON report")
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `wsload <args>` to its end (at most `secs`) and returns its report.
pub fn run(args: &[&str], secs: u64) -> serde_json::Value {
    Run::start(args).report(secs)
}

/// A fresh path in the temp directory for a marker file of this test.
pub fn temp_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("wsload-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// A free TCP port on loopback (for `--metrics`).
pub fn free_port() -> u16 {
    ringcast_tests::ports::free_port()
}

/// The JSON number at `path` (`a.b.c`) of `v`, as u64.
pub fn num(v: &serde_json::Value, path: &str) -> u64 {
    path.split('.')
        .fold(v, |v, key| &v[key])
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v}"))
}
