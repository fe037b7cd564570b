//! wsload's own cost: CPU seconds (user + system) of the calling thread from
//! `getrusage(RUSAGE_THREAD)` (the engine thread, so the publisher and progress threads of a
//! single-process run are not counted) and the process's resident set size from
//! `/proc/self/statm`, taken at four points of a worker's run ([`Usage`]), so reports can
//! say what the load generator itself spent per connection and per message.

use serde::{Deserialize, Serialize};

/// CPU seconds (user + system) the calling thread has used so far.
pub fn thread_cpu_seconds() -> f64 {
    // SAFETY: zero is a valid `rusage`; getrusage only writes the struct passed by pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a pointer to a live, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Resident set size of this process in bytes (0 if `/proc` is unreadable).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// Snapshot of CPU and RSS with the number of open connections at that moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UsagePoint {
    /// CPU seconds of the calling thread so far.
    pub cpu_s: f64,
    /// Resident bytes.
    pub rss: u64,
    /// Connections open at that moment.
    pub open: u64,
}

impl UsagePoint {
    /// Measures now (CPU of the calling thread).
    pub fn now(open: u64) -> Self {
        Self {
            cpu_s: thread_cpu_seconds(),
            rss: rss_bytes(),
            open,
        }
    }
}

/// wsload's own cost measured by one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Before the first connect.
    pub start: UsagePoint,
    /// When half of the worker's connections were open (marginal memory per connection).
    pub mid: Option<UsagePoint>,
    /// When the ramp ended.
    pub ramp_end: UsagePoint,
    /// When the measured phase (hold, publish, echo, churn) ended.
    pub hold_end: UsagePoint,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_something() {
        let v: Vec<u8> = vec![1; 1 << 20];
        assert!(rss_bytes() > (1 << 20));
        // Burn CPU until the kernel's tick-granular accounting shows some (bounded).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut x = 0u64;
        while thread_cpu_seconds() == 0.0 && std::time::Instant::now() < deadline {
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(x != 1 || v[0] == 1);
        assert!(thread_cpu_seconds() > 0.0);
        assert_eq!(UsagePoint::now(3).open, 3);
    }
}
