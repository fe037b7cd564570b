//! A gateway's log file (see `Gateway::start_logged`), searched while the test runs and
//! removed when dropped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A log file for one gateway of one test.
pub struct GatewayLog(PathBuf);

impl GatewayLog {
    /// A log path in the temporary directory, unique to this test process, `test` and
    /// `name`.
    pub fn new(test: &str, name: &str) -> GatewayLog {
        GatewayLog(
            std::env::temp_dir().join(format!("ringcast-{test}-{}-{name}.log", std::process::id())),
        )
    }

    /// Where the gateway writes it.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Waits at most `secs` for `text` in the log; returns the log.
    pub fn wait_for(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            if log.contains(text) {
                return log;
            }
            assert!(Instant::now() < deadline, "no `{text}` in the log:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for GatewayLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
