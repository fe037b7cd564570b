//! Why a connection closed: the single source of the `reason` label values of
//! `ringcast_connections_closed_total`. Dashboards, alerts and tests match these strings,
//! so a label never changes once published.

use ringcast_proto::ProtocolError;

/// Why a connection closed; decided once, when it starts closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The peer ended or broke the connection before its handshake finished.
    HandshakeAborted,
    /// The handshake did not finish within the handshake timeout.
    HandshakeTimeout,
    /// The request was refused with an HTTP error (see the handshake failure reasons).
    HandshakeFailed,
    /// The peer sent its FIN.
    PeerGone,
    /// The socket failed (a receive or send error).
    Reset,
    /// The client sent a close frame.
    ClientClose,
    /// The client broke the WebSocket protocol (the label names the error).
    Protocol(ProtocolError),
    /// No pong arrived within the pong timeout.
    PingTimeout,
    /// The connection's queue passed its limit under the close policy.
    SlowConsumer,
    /// A drain closed it (1001 or, still handshaking, dropped).
    Shutdown,
    /// A long poll was answered with messages.
    PollDone,
    /// A long poll was answered 204 at its timeout.
    PollTimeout,
    /// The connection's token expired (WebSocket close 4001, SSE `token_expired` event,
    /// long poll 401).
    TokenExpired,
}

impl CloseReason {
    /// The `reason` label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            CloseReason::HandshakeAborted => "handshake_aborted",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::HandshakeFailed => "handshake_failed",
            CloseReason::PeerGone => "peer_gone",
            CloseReason::Reset => "reset",
            CloseReason::ClientClose => "client_close",
            CloseReason::Protocol(err) => err.label(),
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Shutdown => "shutdown",
            CloseReason::PollDone => "poll_done",
            CloseReason::PollTimeout => "poll_timeout",
            CloseReason::TokenExpired => "token_expired",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_published_strings() {
        let labels = [
            (CloseReason::HandshakeAborted, "handshake_aborted"),
            (CloseReason::HandshakeTimeout, "handshake_timeout"),
            (CloseReason::HandshakeFailed, "handshake_failed"),
            (CloseReason::PeerGone, "peer_gone"),
            (CloseReason::Reset, "reset"),
            (CloseReason::ClientClose, "client_close"),
            (
                CloseReason::Protocol(ProtocolError::InvalidUtf8),
                "invalid_utf8",
            ),
            (CloseReason::PingTimeout, "ping_timeout"),
            (CloseReason::SlowConsumer, "slow_consumer"),
            (CloseReason::Shutdown, "shutdown"),
            (CloseReason::PollDone, "poll_done"),
            (CloseReason::PollTimeout, "poll_timeout"),
            (CloseReason::TokenExpired, "token_expired"),
        ];
        for (reason, label) in labels {
            assert_eq!(reason.label(), label, "{reason:?}");
        }
    }
}
