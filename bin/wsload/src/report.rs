//! JSON reports: the one-line result of `hold` and `publish`, derived rates, merging the
//! reports of worker processes, and writing the line to stdout and an optional file.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Connection attempts that failed, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectErrors {
    /// The server refused the TCP connection.
    pub refused: u64,
    /// TCP connect or WebSocket handshake did not finish in time (or was never attempted
    /// because the ramp ran out of time).
    pub timeout: u64,
    /// The server answered the handshake with something other than a valid 101.
    pub handshake: u64,
    /// Any other error (bind, address exhaustion, reset, ...).
    pub other: u64,
}

impl ConnectErrors {
    /// All failures.
    pub fn total(&self) -> u64 {
        self.refused + self.timeout + self.handshake + self.other
    }

    fn add(&mut self, other: &Self) {
        self.refused += other.refused;
        self.timeout += other.timeout;
        self.handshake += other.handshake;
        self.other += other.other;
    }
}

/// Result of `wsload hold`. Times ending in `_at_s` are seconds since the run started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HoldReport {
    /// Always `"hold"`.
    pub scenario: String,
    /// Connections attempted.
    pub target: u64,
    /// Connections whose handshake succeeded.
    pub connected: u64,
    /// Connections that failed to connect.
    pub failed: u64,
    /// Failures by cause.
    pub connect_errors: ConnectErrors,
    /// From the first connect to the last connect resolved.
    pub ramp_seconds: f64,
    /// `connected / ramp_seconds`.
    pub connect_rate_per_s: f64,
    /// Connections the server closed (close frame, EOF or reset) before wsload did.
    pub closed_by_server: u64,
    /// Connections dropped because the server broke the protocol.
    pub protocol_errors: u64,
    /// Text and binary messages received.
    pub messages: u64,
    /// Payload bytes of those messages.
    pub bytes: u64,
    /// Pings received (each answered with a pong).
    pub pings: u64,
    /// Sequence numbers skipped (sum over connections of missing numbers).
    pub seq_gaps: u64,
    /// Sequence numbers not larger than the last one seen on their connection.
    pub seq_dups: u64,
    /// With `--expect-messages M`: connections that got exactly M messages, no gaps, no dups.
    pub conns_complete: u64,
    /// First message received.
    pub first_message_at_s: Option<f64>,
    /// Last message received.
    pub last_message_at_s: Option<f64>,
    /// `messages / (last_message_at_s - first_message_at_s)`.
    pub deliveries_per_s: f64,
    /// Whole run.
    pub elapsed_s: f64,
}

impl HoldReport {
    /// Recomputes `connect_rate_per_s` and `deliveries_per_s` from the counts.
    pub fn derive_rates(&mut self) {
        self.connect_rate_per_s = per_second(self.connected, self.ramp_seconds);
        self.deliveries_per_s = match (self.first_message_at_s, self.last_message_at_s) {
            (Some(first), Some(last)) => per_second(self.messages, last - first),
            _ => 0.0,
        };
    }
}

/// Result of `wsload publish`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishReport {
    /// Always `"publish"`.
    pub scenario: String,
    /// Requests answered 202.
    pub published: u64,
    /// Requests answered otherwise or not at all.
    pub errors: u64,
    /// Whole run.
    pub elapsed_s: f64,
    /// `published / elapsed_s`.
    pub rate_per_s: f64,
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Merges worker reports: counts are summed, the ramp and run last as long as the longest
/// worker, message times span all workers, and rates are recomputed.
pub fn merge(reports: &[HoldReport]) -> HoldReport {
    let mut merged = HoldReport {
        scenario: "hold".to_owned(),
        ..HoldReport::default()
    };
    for r in reports {
        merged.target += r.target;
        merged.connected += r.connected;
        merged.failed += r.failed;
        merged.connect_errors.add(&r.connect_errors);
        merged.ramp_seconds = merged.ramp_seconds.max(r.ramp_seconds);
        merged.closed_by_server += r.closed_by_server;
        merged.protocol_errors += r.protocol_errors;
        merged.messages += r.messages;
        merged.bytes += r.bytes;
        merged.pings += r.pings;
        merged.seq_gaps += r.seq_gaps;
        merged.seq_dups += r.seq_dups;
        merged.conns_complete += r.conns_complete;
        merged.first_message_at_s = min_opt(merged.first_message_at_s, r.first_message_at_s);
        merged.last_message_at_s = max_opt(merged.last_message_at_s, r.last_message_at_s);
        merged.elapsed_s = merged.elapsed_s.max(r.elapsed_s);
    }
    merged.derive_rates();
    merged
}

/// Prints `report` as one JSON line on stdout and, when `file` is given, writes the same line
/// there.
pub fn emit(report: &impl Serialize, file: Option<&Path>) -> anyhow::Result<()> {
    let line = serde_json::to_string(report)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    if let Some(file) = file {
        std::fs::write(file, format!("{line}\n"))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(connected: u64, messages: u64, first: f64, last: f64) -> HoldReport {
        let mut r = HoldReport {
            scenario: "hold".to_owned(),
            target: connected + 1,
            connected,
            failed: 1,
            connect_errors: ConnectErrors {
                refused: 1,
                ..ConnectErrors::default()
            },
            ramp_seconds: connected as f64 / 100.0,
            messages,
            first_message_at_s: Some(first),
            last_message_at_s: Some(last),
            elapsed_s: last + 1.0,
            ..HoldReport::default()
        };
        r.derive_rates();
        r
    }

    #[test]
    fn derives_rates() {
        let r = worker(200, 1000, 1.0, 3.0);
        assert_eq!(r.connect_rate_per_s, 100.0);
        assert_eq!(r.deliveries_per_s, 500.0);
    }

    #[test]
    fn rates_are_zero_without_time() {
        let mut r = HoldReport {
            messages: 10,
            connected: 10,
            ..HoldReport::default()
        };
        r.derive_rates();
        assert_eq!(r.connect_rate_per_s, 0.0);
        assert_eq!(r.deliveries_per_s, 0.0);
        r.first_message_at_s = Some(2.0);
        r.last_message_at_s = Some(2.0);
        r.derive_rates();
        assert_eq!(r.deliveries_per_s, 0.0);
    }

    #[test]
    fn merges_sums_and_recomputes_rates() {
        let merged = merge(&[worker(100, 1000, 1.0, 3.0), worker(300, 3000, 2.0, 5.0)]);
        assert_eq!(merged.target, 402);
        assert_eq!(merged.connected, 400);
        assert_eq!(merged.failed, 2);
        assert_eq!(merged.connect_errors.refused, 2);
        assert_eq!(merged.ramp_seconds, 3.0);
        assert_eq!(merged.first_message_at_s, Some(1.0));
        assert_eq!(merged.last_message_at_s, Some(5.0));
        assert_eq!(merged.deliveries_per_s, 1000.0);
        assert_eq!(merged.elapsed_s, 6.0);
    }

    #[test]
    fn merge_of_nothing_is_empty_hold_report() {
        let merged = merge(&[]);
        assert_eq!(merged.scenario, "hold");
        assert_eq!(merged.first_message_at_s, None);
        assert_eq!(merged.deliveries_per_s, 0.0);
    }

    #[test]
    fn json_has_the_documented_fields() {
        let value = serde_json::to_value(worker(1, 0, 0.0, 0.0)).unwrap();
        for key in [
            "scenario",
            "target",
            "connected",
            "failed",
            "connect_errors",
            "ramp_seconds",
            "connect_rate_per_s",
            "closed_by_server",
            "messages",
            "bytes",
            "pings",
            "seq_gaps",
            "seq_dups",
            "conns_complete",
            "first_message_at_s",
            "last_message_at_s",
            "deliveries_per_s",
            "elapsed_s",
        ] {
            assert!(value.get(key).is_some(), "{key}");
        }
        let errors = &value["connect_errors"];
        for key in ["refused", "timeout", "handshake", "other"] {
            assert!(errors.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn round_trips_through_json() {
        let r = worker(5, 7, 0.5, 1.5);
        let back: HoldReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
