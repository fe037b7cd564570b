//! Why a handshake was refused: the single source of the `reason` label values of
//! `ringcast_handshake_failures_total`. Request errors and token/origin refusals keep the
//! labels of their own error types; the rest are named here.

use crate::auth::AuthError;
use crate::tls_session::TlsFailure;
use ringcast_proto::HandshakeError;

/// Why a request was answered with an HTTP error instead of being admitted (or, for a
/// failed TLS handshake, dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandshakeFailure {
    /// The request itself is not a valid upgrade or plain GET.
    Request(HandshakeError),
    /// The origin or token rules refused it.
    Auth(AuthError),
    /// `/?channels=` names an invalid channel.
    BadChannel,
    /// `/?channels=` names more channels than a connection may have.
    TooManyChannels,
    /// `/` with no channel while client commands are off.
    NotFound,
    /// The source address is over its connection rate (429).
    RateLimited,
    /// The node is full or draining (503).
    ServerFull,
    /// The node's handshake budget (`--max-handshakes-per-sec`) is spent (503 with
    /// `Retry-After`).
    HandshakeBudget,
    /// `since=` is not `last` or `<epoch>:<offset>`, or names more positions than
    /// channels.
    BadSince,
    /// `format=` is not `raw` or `json`.
    BadFormat,
    /// A poll or event stream from an address over its channel creation rate (429).
    ChannelRateLimited,
    /// The TLS handshake failed (or was never attempted: plain HTTP, not TLS).
    Tls(TlsFailure),
}

impl HandshakeFailure {
    /// Every failure without data (request and auth errors come from their types).
    const PLAIN: [HandshakeFailure; 9] = [
        HandshakeFailure::BadChannel,
        HandshakeFailure::TooManyChannels,
        HandshakeFailure::NotFound,
        HandshakeFailure::RateLimited,
        HandshakeFailure::ServerFull,
        HandshakeFailure::HandshakeBudget,
        HandshakeFailure::ChannelRateLimited,
        HandshakeFailure::BadSince,
        HandshakeFailure::BadFormat,
    ];

    /// Every label value, each once (a request error and a failure named here may share
    /// one, such as `bad_channel`), for exporting each at 0 from startup.
    pub(crate) fn labels() -> Vec<&'static str> {
        let requests = HandshakeError::SERVER_SIDE
            .into_iter()
            .map(HandshakeFailure::Request);
        let auth = AuthError::ALL.into_iter().map(HandshakeFailure::Auth);
        let tls = TlsFailure::ALL.into_iter().map(HandshakeFailure::Tls);
        let mut labels: Vec<&'static str> = Vec::new();
        for failure in requests
            .chain(auth)
            .chain(tls)
            .chain(HandshakeFailure::PLAIN)
        {
            if !labels.contains(&failure.label()) {
                labels.push(failure.label());
            }
        }
        labels
    }

    /// The `reason` label value.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            HandshakeFailure::Request(err) => err.label(),
            HandshakeFailure::Auth(err) => err.label(),
            HandshakeFailure::Tls(failure) => failure.label(),
            HandshakeFailure::BadChannel => "bad_channel",
            HandshakeFailure::TooManyChannels => "too_many_channels",
            HandshakeFailure::NotFound => "not_found",
            HandshakeFailure::RateLimited => "rate_limited",
            HandshakeFailure::ServerFull => "server_full",
            HandshakeFailure::HandshakeBudget => "handshake_budget",
            HandshakeFailure::BadSince => "bad_since",
            HandshakeFailure::BadFormat => "bad_format",
            HandshakeFailure::ChannelRateLimited => "channel_rate_limited",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_published_strings() {
        let labels = [
            (HandshakeFailure::Request(HandshakeError::NotGet), "not_get"),
            (HandshakeFailure::Auth(AuthError::Expired), "token_expired"),
            (HandshakeFailure::BadChannel, "bad_channel"),
            (HandshakeFailure::TooManyChannels, "too_many_channels"),
            (HandshakeFailure::NotFound, "not_found"),
            (HandshakeFailure::RateLimited, "rate_limited"),
            (HandshakeFailure::ServerFull, "server_full"),
            (HandshakeFailure::HandshakeBudget, "handshake_budget"),
            (HandshakeFailure::BadSince, "bad_since"),
            (HandshakeFailure::BadFormat, "bad_format"),
            (HandshakeFailure::ChannelRateLimited, "channel_rate_limited"),
        ];
        for (failure, label) in labels {
            assert_eq!(failure.label(), label, "{failure:?}");
        }
    }

    #[test]
    fn labels_list_every_failure_once() {
        // No wildcard: a new failure does not compile here until it is in `PLAIN`.
        let listed = |failure: &HandshakeFailure| match failure {
            HandshakeFailure::Request(_) | HandshakeFailure::Auth(_) | HandshakeFailure::Tls(_) => {
                true
            }
            HandshakeFailure::BadChannel
            | HandshakeFailure::TooManyChannels
            | HandshakeFailure::NotFound
            | HandshakeFailure::RateLimited
            | HandshakeFailure::ServerFull
            | HandshakeFailure::HandshakeBudget
            | HandshakeFailure::ChannelRateLimited
            | HandshakeFailure::BadSince
            | HandshakeFailure::BadFormat => HandshakeFailure::PLAIN.contains(failure),
        };
        assert!(HandshakeFailure::PLAIN.iter().all(listed));
        let labels = HandshakeFailure::labels();
        // 11 request errors, 8 auth refusals, 5 TLS failures, 9 named here of which 2
        // repeat a request's.
        assert_eq!(labels.len(), 11 + 8 + 5 + 7, "{labels:?}");
        for label in [
            "not_get",
            "token_expired",
            "rate_limited",
            "handshake_budget",
            "channel_rate_limited",
            "bad_channel",
            "tls_plain_http",
        ] {
            assert!(labels.contains(&label), "{label}");
        }
    }
}
