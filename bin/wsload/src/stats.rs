//! Counters of one `hold` worker, shared by its connection tasks on a single-threaded runtime
//! (plain `Cell`s, no atomics), and the snapshot they turn into for progress and the report.

use std::cell::Cell;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::report::ConnectErrors;

/// Why a connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Connection refused.
    Refused,
    /// Connect or handshake took too long, or was never attempted.
    Timeout,
    /// Bad or rejected handshake response.
    Handshake,
    /// Anything else.
    Other,
}

/// Live counters of one worker.
#[derive(Debug, Default)]
pub struct HoldStats {
    connected: Cell<u64>,
    open: Cell<u64>,
    refused: Cell<u64>,
    timeout: Cell<u64>,
    handshake: Cell<u64>,
    other: Cell<u64>,
    closed_by_server: Cell<u64>,
    protocol_errors: Cell<u64>,
    messages: Cell<u64>,
    bytes: Cell<u64>,
    pings: Cell<u64>,
    seq_gaps: Cell<u64>,
    seq_dups: Cell<u64>,
    complete: Cell<u64>,
    awaiting: Cell<u64>,
    first_message: Cell<Option<Instant>>,
    last_message: Cell<Option<Instant>>,
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get() + by);
}

fn drop_one(cell: &Cell<u64>) {
    cell.set(cell.get().saturating_sub(1));
}

impl HoldStats {
    /// A connection attempt failed.
    pub fn failed(&self, why: ConnectFailure, count: u64) {
        let cell = match why {
            ConnectFailure::Refused => &self.refused,
            ConnectFailure::Timeout => &self.timeout,
            ConnectFailure::Handshake => &self.handshake,
            ConnectFailure::Other => &self.other,
        };
        bump(cell, count);
    }

    /// A handshake succeeded; `awaiting` says whether it still waits for expected messages.
    pub fn connected(&self, awaiting: bool) {
        bump(&self.connected, 1);
        bump(&self.open, 1);
        if awaiting {
            bump(&self.awaiting, 1);
        }
    }

    /// A connection ended; `by_server` when the server ended it first, `was_awaiting` when it
    /// had not yet received the expected messages.
    pub fn closed(&self, by_server: bool, was_awaiting: bool) {
        drop_one(&self.open);
        if by_server {
            bump(&self.closed_by_server, 1);
        }
        if was_awaiting {
            drop_one(&self.awaiting);
        }
    }

    /// The server broke the protocol on a connection.
    pub fn protocol_error(&self) {
        bump(&self.protocol_errors, 1);
    }

    /// A data message of `len` payload bytes arrived at `now`.
    pub fn message(&self, len: usize, now: Instant) {
        bump(&self.messages, 1);
        bump(&self.bytes, len as u64);
        if self.first_message.get().is_none() {
            self.first_message.set(Some(now));
        }
        self.last_message.set(Some(now));
    }

    /// A ping arrived.
    pub fn ping(&self) {
        bump(&self.pings, 1);
    }

    /// `count` sequence numbers were skipped.
    pub fn seq_gap(&self, count: u64) {
        bump(&self.seq_gaps, count);
    }

    /// A sequence number repeated or went backwards.
    pub fn seq_dup(&self) {
        bump(&self.seq_dups, 1);
    }

    /// A connection reached the expected message count.
    pub fn reached_expected(&self) {
        drop_one(&self.awaiting);
    }

    /// A connection became complete (`true`) or stopped being complete (`false`).
    pub fn set_complete(&self, complete: bool) {
        if complete {
            bump(&self.complete, 1);
        } else {
            drop_one(&self.complete);
        }
    }

    /// Attempts resolved so far (connected or failed).
    pub fn resolved(&self) -> u64 {
        self.connected.get() + self.connect_errors().total()
    }

    /// Open connections still waiting for expected messages.
    pub fn awaiting(&self) -> u64 {
        self.awaiting.get()
    }

    /// Open connections.
    pub fn open(&self) -> u64 {
        self.open.get()
    }

    /// Failures so far, by cause.
    pub fn connect_errors(&self) -> ConnectErrors {
        ConnectErrors {
            refused: self.refused.get(),
            timeout: self.timeout.get(),
            handshake: self.handshake.get(),
            other: self.other.get(),
        }
    }

    /// Progress snapshot.
    pub fn progress(&self, target: u64, elapsed_s: f64) -> Progress {
        Progress {
            elapsed_s,
            target,
            connected: self.connected.get(),
            open: self.open.get(),
            failed: self.connect_errors().total(),
            messages: self.messages.get(),
        }
    }

    /// Counts of the report (the caller fills scenario, target, times and rates).
    pub fn counts(&self) -> Counts {
        Counts {
            connected: self.connected.get(),
            connect_errors: self.connect_errors(),
            closed_by_server: self.closed_by_server.get(),
            protocol_errors: self.protocol_errors.get(),
            messages: self.messages.get(),
            bytes: self.bytes.get(),
            pings: self.pings.get(),
            seq_gaps: self.seq_gaps.get(),
            seq_dups: self.seq_dups.get(),
            conns_complete: self.complete.get(),
            first_message: self.first_message.get(),
            last_message: self.last_message.get(),
        }
    }
}

/// Counter values at the end of a run.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// Handshakes that succeeded.
    pub connected: u64,
    /// Failures by cause.
    pub connect_errors: ConnectErrors,
    /// Connections the server ended.
    pub closed_by_server: u64,
    /// Connections dropped for protocol errors.
    pub protocol_errors: u64,
    /// Data messages.
    pub messages: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Pings.
    pub pings: u64,
    /// Skipped sequence numbers.
    pub seq_gaps: u64,
    /// Repeated sequence numbers.
    pub seq_dups: u64,
    /// Complete connections.
    pub conns_complete: u64,
    /// First data message.
    pub first_message: Option<Instant>,
    /// Last data message.
    pub last_message: Option<Instant>,
}

/// Once-a-second progress of one worker (or all workers, summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Connections to open.
    pub target: u64,
    /// Handshakes that succeeded.
    pub connected: u64,
    /// Connections open now.
    pub open: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Data messages received.
    pub messages: u64,
}

impl Progress {
    /// Adds another worker's progress (elapsed time is the later one).
    pub fn add(&mut self, other: &Self) {
        self.elapsed_s = self.elapsed_s.max(other.elapsed_s);
        self.target += other.target;
        self.connected += other.connected;
        self.open += other.open;
        self.failed += other.failed;
        self.messages += other.messages;
    }

    /// The human-readable stderr line.
    pub fn line(&self) -> String {
        format!(
            "[wsload] {:7.1}s connected {}/{} open {} failed {} msgs {}",
            self.elapsed_s, self.connected, self.target, self.open, self.failed, self.messages
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_connections_and_awaiting() {
        let stats = HoldStats::default();
        stats.connected(true);
        stats.connected(true);
        stats.failed(ConnectFailure::Refused, 1);
        stats.failed(ConnectFailure::Timeout, 2);
        assert_eq!(stats.resolved(), 5);
        assert_eq!(stats.awaiting(), 2);
        stats.reached_expected();
        stats.closed(true, true);
        assert_eq!(stats.awaiting(), 0);
        assert_eq!(stats.open(), 1);
        let counts = stats.counts();
        assert_eq!(counts.closed_by_server, 1);
        assert_eq!(counts.connect_errors.total(), 3);
    }

    #[test]
    fn progress_sums() {
        let stats = HoldStats::default();
        stats.connected(false);
        stats.message(10, Instant::now());
        let mut total = stats.progress(4, 1.0);
        total.add(&stats.progress(4, 2.0));
        assert_eq!(total.target, 8);
        assert_eq!(total.connected, 2);
        assert_eq!(total.messages, 2);
        assert_eq!(total.elapsed_s, 2.0);
        assert!(total.line().contains("2/8"));
    }
}
