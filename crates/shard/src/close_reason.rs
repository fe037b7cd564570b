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
    /// What a resuming client missed did not fit its queue: it got what fitted and
    /// was closed (WebSocket 1013) to resume again from there.
    RecoveryTooLarge,
    /// TLS failed after its handshake (a bad record, an alert from the client).
    TlsError,
    /// The admin API's `POST /disconnect` named it, by its token's `sub` or a channel it
    /// subscribes to (WebSocket close 4003, SSE `disconnected` event, long poll 403).
    Disconnected,
}

impl CloseReason {
    /// Every reason without data, in label order (the protocol errors come from
    /// [`ProtocolError::ALL`]).
    const PLAIN: [CloseReason; 15] = [
        CloseReason::HandshakeAborted,
        CloseReason::HandshakeTimeout,
        CloseReason::HandshakeFailed,
        CloseReason::PeerGone,
        CloseReason::Reset,
        CloseReason::ClientClose,
        CloseReason::PingTimeout,
        CloseReason::SlowConsumer,
        CloseReason::Shutdown,
        CloseReason::PollDone,
        CloseReason::PollTimeout,
        CloseReason::TokenExpired,
        CloseReason::RecoveryTooLarge,
        CloseReason::TlsError,
        CloseReason::Disconnected,
    ];

    /// Every label value a server can count, for exporting each at 0 from startup. A
    /// server's decoder never reports a masked frame (that is a client's error).
    pub(crate) fn labels() -> impl Iterator<Item = &'static str> {
        let protocol = ProtocolError::ALL
            .into_iter()
            .filter(|err| *err != ProtocolError::Masked)
            .map(CloseReason::Protocol);
        CloseReason::PLAIN
            .into_iter()
            .chain(protocol)
            .map(CloseReason::label)
    }

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
            CloseReason::RecoveryTooLarge => "recovery_too_large",
            CloseReason::TlsError => "tls_error",
            CloseReason::Disconnected => "disconnected",
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
            (CloseReason::RecoveryTooLarge, "recovery_too_large"),
            (CloseReason::TlsError, "tls_error"),
            (CloseReason::Disconnected, "disconnected"),
        ];
        for (reason, label) in labels {
            assert_eq!(reason.label(), label, "{reason:?}");
        }
    }

    #[test]
    fn labels_list_every_reason_once() {
        // No wildcard: a new reason does not compile here until it is in `PLAIN`.
        let listed = |reason: CloseReason| match reason {
            CloseReason::Protocol(_) => true,
            CloseReason::HandshakeAborted
            | CloseReason::HandshakeTimeout
            | CloseReason::HandshakeFailed
            | CloseReason::PeerGone
            | CloseReason::Reset
            | CloseReason::ClientClose
            | CloseReason::PingTimeout
            | CloseReason::SlowConsumer
            | CloseReason::Shutdown
            | CloseReason::PollDone
            | CloseReason::PollTimeout
            | CloseReason::TokenExpired
            | CloseReason::RecoveryTooLarge
            | CloseReason::TlsError
            | CloseReason::Disconnected => CloseReason::PLAIN.contains(&reason),
        };
        assert!(CloseReason::PLAIN.into_iter().all(listed));
        let labels: Vec<&str> = CloseReason::labels().collect();
        let mut unique = labels.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), labels.len(), "{labels:?}");
        assert_eq!(labels.len(), 15 + 14);
        assert!(labels.contains(&"token_expired") && labels.contains(&"invalid_utf8"));
        assert!(labels.contains(&"disconnected"));
        assert!(!labels.contains(&"masked"));
    }
}
