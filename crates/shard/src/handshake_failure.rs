//! Why a handshake was refused: the single source of the `reason` label values of
//! `ringcast_handshake_failures_total`. Request errors and token/origin refusals keep the
//! labels of their own error types; the rest are named here.

use crate::auth::AuthError;
use ringcast_proto::HandshakeError;

/// Why a request was answered with an HTTP error instead of being admitted.
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
    /// A long poll's `since` is not a number.
    BadSince,
    /// A poll or event stream from an address over its channel creation rate (429).
    ChannelRateLimited,
}

impl HandshakeFailure {
    /// The `reason` label value.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            HandshakeFailure::Request(err) => err.label(),
            HandshakeFailure::Auth(err) => err.label(),
            HandshakeFailure::BadChannel => "bad_channel",
            HandshakeFailure::TooManyChannels => "too_many_channels",
            HandshakeFailure::NotFound => "not_found",
            HandshakeFailure::RateLimited => "rate_limited",
            HandshakeFailure::ServerFull => "server_full",
            HandshakeFailure::BadSince => "bad_since",
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
            (HandshakeFailure::BadSince, "bad_since"),
            (HandshakeFailure::ChannelRateLimited, "channel_rate_limited"),
        ];
        for (failure, label) in labels {
            assert_eq!(failure.label(), label, "{failure:?}");
        }
    }
}
