//! Bounded waits for what other processes produce (ready files and the like).

use std::path::Path;
use std::time::{Duration, Instant};

/// Waits until `path` exists; panics after `secs`.
pub fn wait_for_file(path: &Path, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
