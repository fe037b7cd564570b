//! Plain counters of one worker (owned by its single engine thread: no atomics), the failure
//! kinds of a connection attempt, and how counters of several workers add up.

use serde::{Deserialize, Serialize};

/// Why a connection attempt failed (the `kind` label of `wsload_connect_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Connection refused.
    Refused,
    /// Connect or handshake took too long, or was never attempted.
    Timeout,
    /// Bad or rejected handshake response.
    Handshake,
    /// The connection was reset (or ended) before the handshake finished.
    Reset,
    /// Anything else (bind, address exhaustion, fd limit, ...).
    Other,
}

impl ConnectFailure {
    /// Classifies the errno of a failed connect, send or receive during connection setup.
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc::ECONNREFUSED => Self::Refused,
            libc::ETIMEDOUT | libc::ECANCELED => Self::Timeout,
            libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED => Self::Reset,
            _ => Self::Other,
        }
    }
}

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
    /// Reset or closed by the server before the handshake finished.
    #[serde(default)]
    pub reset: u64,
    /// Any other error (bind, address exhaustion, fd limit, ...).
    pub other: u64,
}

impl ConnectErrors {
    /// All failures.
    pub fn total(&self) -> u64 {
        self.refused + self.timeout + self.handshake + self.reset + self.other
    }

    /// Counts one failure of kind `why`.
    pub fn count(&mut self, why: ConnectFailure, n: u64) {
        let cell = match why {
            ConnectFailure::Refused => &mut self.refused,
            ConnectFailure::Timeout => &mut self.timeout,
            ConnectFailure::Handshake => &mut self.handshake,
            ConnectFailure::Reset => &mut self.reset,
            ConnectFailure::Other => &mut self.other,
        };
        *cell += n;
    }

    /// `(kind label, count)` pairs in a fixed order.
    pub fn by_kind(&self) -> [(&'static str, u64); 5] {
        [
            ("refused", self.refused),
            ("timeout", self.timeout),
            ("handshake", self.handshake),
            ("reset", self.reset),
            ("other", self.other),
        ]
    }

    /// Adds another worker's failures.
    pub fn add(&mut self, other: &Self) {
        self.refused += other.refused;
        self.timeout += other.timeout;
        self.handshake += other.handshake;
        self.reset += other.reset;
        self.other += other.other;
    }
}

/// Counters of one worker (or the sum over workers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Connections wsload tries to hold.
    pub target: u64,
    /// Handshakes that succeeded (reconnects included).
    pub connected: u64,
    /// Connections open now.
    pub open: u64,
    /// Failed attempts by cause.
    pub connect_errors: ConnectErrors,
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
    /// Sequence numbers skipped (sum over connections).
    pub seq_gaps: u64,
    /// Sequence numbers not larger than the last one seen on their connection.
    pub seq_dups: u64,
    /// Of those, the ones smaller than the last one (late, out of order).
    pub seq_out_of_order: u64,
    /// With `--expect-messages M`: connections that got exactly M messages in order.
    pub conns_complete: u64,
    /// Echo messages sent.
    pub echo_sent: u64,
    /// Connections wsload closed to reopen them (churn).
    pub churn_closed: u64,
    /// Reopened connections whose handshake succeeded.
    pub reconnects: u64,
    /// Reopened connections that failed.
    pub reconnect_failures: u64,
    /// Churned connections still closing or reconnecting when the run stopped.
    #[serde(default)]
    pub churn_interrupted: u64,
    /// Receives that found wsload's buffer ring empty (re-armed).
    pub recv_enobufs: u64,
    /// Handshakes the server deferred (`503` + `Retry-After`); each tried again after
    /// the time it asked for. Not failures.
    #[serde(default)]
    pub deferred: u64,
    /// `--resume`: connections the server ended that wsload reopened elsewhere.
    #[serde(default)]
    pub resume_server_closes: u64,
    /// `--resume`: reconnects that failed and moved on to the next URL.
    #[serde(default)]
    pub resume_retries: u64,
    /// `--resume`: resumed subscriptions answered `recovered:true`.
    #[serde(default)]
    pub resume_recovered: u64,
    /// `--resume`: resumed subscriptions answered `recovered:false` (or a history that
    /// changed epoch while connected).
    #[serde(default)]
    pub resume_not_recovered: u64,
    /// `--resume`: losses after which the client had everything it missed again.
    #[serde(default)]
    pub resume_caught_up: u64,
}

impl Counters {
    /// Adds another worker's counters.
    pub fn add(&mut self, o: &Self) {
        self.target += o.target;
        self.connected += o.connected;
        self.open += o.open;
        self.connect_errors.add(&o.connect_errors);
        self.closed_by_server += o.closed_by_server;
        self.protocol_errors += o.protocol_errors;
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.pings += o.pings;
        self.seq_gaps += o.seq_gaps;
        self.seq_dups += o.seq_dups;
        self.seq_out_of_order += o.seq_out_of_order;
        self.conns_complete += o.conns_complete;
        self.echo_sent += o.echo_sent;
        self.churn_closed += o.churn_closed;
        self.reconnects += o.reconnects;
        self.reconnect_failures += o.reconnect_failures;
        self.churn_interrupted += o.churn_interrupted;
        self.recv_enobufs += o.recv_enobufs;
        self.deferred += o.deferred;
        self.resume_server_closes += o.resume_server_closes;
        self.resume_retries += o.resume_retries;
        self.resume_recovered += o.resume_recovered;
        self.resume_not_recovered += o.resume_not_recovered;
        self.resume_caught_up += o.resume_caught_up;
    }

    /// Attempts that failed.
    pub fn failed(&self) -> u64 {
        self.connect_errors.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errnos() {
        assert_eq!(
            ConnectFailure::from_errno(libc::ECONNREFUSED),
            ConnectFailure::Refused
        );
        assert_eq!(
            ConnectFailure::from_errno(libc::ETIMEDOUT),
            ConnectFailure::Timeout
        );
        assert_eq!(
            ConnectFailure::from_errno(libc::ECONNRESET),
            ConnectFailure::Reset
        );
        assert_eq!(
            ConnectFailure::from_errno(libc::EADDRNOTAVAIL),
            ConnectFailure::Other
        );
    }

    #[test]
    fn counts_and_adds() {
        let mut a = Counters::default();
        a.connect_errors.count(ConnectFailure::Reset, 2);
        a.connect_errors.count(ConnectFailure::Refused, 1);
        a.messages = 5;
        let mut b = a;
        b.add(&a);
        assert_eq!(b.failed(), 6);
        assert_eq!(b.messages, 10);
        assert_eq!(b.connect_errors.by_kind()[3], ("reset", 4));
    }
}
