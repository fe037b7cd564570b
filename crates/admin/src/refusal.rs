//! Why the admin port refused a request or a connection: the `reason` label of
//! `ringcast_admin_refused_total`.

use ringcast_telemetry::names;

/// A refusal reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A write request without the right bearer token.
    Unauthorized,
    /// A write request from an origin not allowed.
    Origin,
    /// A write request naming a Host not allowed (DNS rebinding).
    Host,
    /// A connection over `--admin-max-connections`.
    OverCapacity,
    /// Headers (with `--admin-tls`, the TLS handshake and headers) slower than the header
    /// timeout, a body stalled past the idle timeout, or a write blocked that long.
    Timeout,
    /// With `--admin-tls`, a connection whose TLS handshake failed (plain HTTP, bytes
    /// that are not TLS, no common version or cipher) or that closed before it completed.
    TlsHandshake,
    /// A `POST /disconnect` whose body names no valid `sub` or channel (400).
    BadDisconnect,
}

impl Refusal {
    /// Every reason, for exporting each at 0 from startup.
    pub(crate) const ALL: [Refusal; 7] = [
        Refusal::Unauthorized,
        Refusal::Origin,
        Refusal::Host,
        Refusal::OverCapacity,
        Refusal::Timeout,
        Refusal::TlsHandshake,
        Refusal::BadDisconnect,
    ];

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::Origin => "origin",
            Refusal::Host => "host",
            Refusal::OverCapacity => "over_capacity",
            Refusal::Timeout => "timeout",
            Refusal::TlsHandshake => "tls_handshake",
            Refusal::BadDisconnect => "bad_disconnect",
        }
    }

    /// Adds one to this reason's counter.
    pub(crate) fn count(self) {
        metrics::counter!(names::ADMIN_REFUSED, names::LABEL_REASON => self.label()).increment(1);
    }

    /// Exports every reason's counter (at 0 until something is refused).
    pub(crate) fn register_all() {
        for reason in Refusal::ALL {
            metrics::counter!(names::ADMIN_REFUSED, names::LABEL_REASON => reason.label())
                .increment(0);
        }
    }
}
