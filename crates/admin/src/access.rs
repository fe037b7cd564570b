//! Who may call the admin API's write endpoints (`POST /publish...`, `POST /disconnect`,
//! and any request with an unsafe method): the bearer token, the browser origins and the
//! Host names allowed, and the check every write passes before routing. The occupancy
//! reads (`/channels...`, which list channel names) pass it too; the other reads
//! (`/healthz`, `/readyz`, `/metrics`) are open.

use std::fmt;
use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::refusal::Refusal;
use crate::response::json_error;
use crate::routes::AdminState;

/// Shortest accepted admin token, in bytes.
pub const MIN_TOKEN_BYTES: usize = 16;

/// A value of `--admin-token`, `--admin-allowed-origins` or `--admin-allowed-hosts` that
/// cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessConfigError {
    /// The token is shorter than [`MIN_TOKEN_BYTES`].
    #[error("the admin token must be at least {MIN_TOKEN_BYTES} bytes, got {0}")]
    TokenTooShort(usize),
    /// An origin that is not `scheme://host[:port]`.
    #[error("`{0}`: an allowed origin is scheme://host[:port], without a path or wildcard")]
    BadOrigin(String),
    /// A host entry that is not a bare host name.
    #[error(
        "`{0}`: an allowed host is a bare name such as publisher.internal (no scheme, port or path)"
    )]
    BadHost(String),
}

/// The bearer token write requests must carry (`Authorization: Bearer <token>`).
#[derive(Clone)]
pub struct AdminToken(Vec<u8>);

impl AdminToken {
    /// A token of at least [`MIN_TOKEN_BYTES`] bytes.
    pub fn parse(text: &str) -> Result<AdminToken, AccessConfigError> {
        if text.len() < MIN_TOKEN_BYTES {
            return Err(AccessConfigError::TokenTooShort(text.len()));
        }
        Ok(AdminToken(text.as_bytes().to_vec()))
    }

    /// Whether `presented` is the token, in time independent of where they differ (a
    /// different length is refused at once: the length is not the secret).
    fn matches(&self, presented: &[u8]) -> bool {
        self.0.ct_eq(presented).into()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// `scheme://host[:port]`, lowercased: one entry of `--admin-allowed-origins`, compared
/// exactly with a request's `Origin`.
pub fn parse_allowed_origin(text: &str) -> Result<String, AccessConfigError> {
    let bad = || AccessConfigError::BadOrigin(text.to_owned());
    let (scheme, authority) = text.split_once("://").ok_or_else(bad)?;
    let scheme_ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let authority_ok = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    if !scheme_ok || !authority_ok {
        return Err(bad());
    }
    Ok(text.to_ascii_lowercase())
}

/// A bare host name, lowercased: one entry of `--admin-allowed-hosts`.
pub fn parse_allowed_host(text: &str) -> Result<String, AccessConfigError> {
    let ok = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c));
    if ok {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(AccessConfigError::BadHost(text.to_owned()))
    }
}

/// The rules for write requests. The default is today's open API: no token, and a Host
/// must be an IP literal or `localhost`.
#[derive(Debug, Clone, Default)]
pub struct AdminAccess {
    /// The bearer token; `None` leaves publishing open to anyone who reaches the port.
    pub token: Option<AdminToken>,
    /// Origins (from [`parse_allowed_origin`]) whose pages may publish; a request with
    /// any other `Origin` is refused.
    pub allowed_origins: Vec<String>,
    /// Host names (from [`parse_allowed_host`]) accepted besides IP literals and
    /// `localhost`, against DNS rebinding.
    pub allowed_hosts: Vec<String>,
}

impl AdminAccess {
    /// Why `headers` may not write, if they may not: Origin first, then Host, then token.
    /// A request without `Host` (HTTP/1.0 tools) is no browser and is not Host-checked.
    fn refusal(&self, headers: &HeaderMap) -> Option<WriteRefusal> {
        if let Some(origin) = headers.get(ORIGIN)
            && !self.origin_allowed(origin)
        {
            return Some(WriteRefusal::Origin);
        }
        if let Some(host) = headers.get(HOST)
            && !self.host_allowed(host)
        {
            return Some(WriteRefusal::Host);
        }
        if let Some(token) = &self.token
            && !bearer(headers).is_some_and(|presented| token.matches(presented))
        {
            return Some(WriteRefusal::Unauthorized);
        }
        None
    }

    fn origin_allowed(&self, origin: &HeaderValue) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        self.allowed_origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }

    fn host_allowed(&self, host: &HeaderValue) -> bool {
        let Ok(host) = host.to_str() else {
            return false;
        };
        let name = host_name(host);
        if name.is_empty() {
            return false;
        }
        name.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self
                .allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name))
    }
}

/// `host` without its `:port` (`[::1]:9090` → `[::1]`).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(name, _)| &host[..=name.len()]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The credentials of `Authorization: Bearer <credentials>` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, credentials) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then_some(credentials)
}

/// Why a write request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteRefusal {
    /// No bearer token, or the wrong one (401).
    Unauthorized,
    /// An `Origin` not in `--admin-allowed-origins` (403).
    Origin,
    /// A `Host` that is no IP literal, `localhost` or allowed name (403).
    Host,
}

impl WriteRefusal {
    fn reason(self) -> Refusal {
        match self {
            WriteRefusal::Unauthorized => Refusal::Unauthorized,
            WriteRefusal::Origin => Refusal::Origin,
            WriteRefusal::Host => Refusal::Host,
        }
    }
}

impl IntoResponse for WriteRefusal {
    fn into_response(self) -> Response {
        match self {
            WriteRefusal::Unauthorized => {
                let mut response = json_error(StatusCode::UNAUTHORIZED, "unauthorized");
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            WriteRefusal::Origin => json_error(StatusCode::FORBIDDEN, "origin not allowed"),
            WriteRefusal::Host => json_error(StatusCode::FORBIDDEN, "host not allowed"),
        }
    }
}

/// Middleware on the whole router: a request with an unsafe method (a write: anything
/// but GET, HEAD, OPTIONS, TRACE), or any request under `/channels`, that
/// [`AdminAccess`] does not allow is refused (401 with `WWW-Authenticate: Bearer`, or
/// 403) and counted by reason; other reads pass.
pub(crate) async fn guard_writes(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let guarded =
        request.uri().path() == "/channels" || request.uri().path().starts_with("/channels/");
    if request.method().is_safe() && !guarded {
        return next.run(request).await;
    }
    match state.access.refusal(request.headers()) {
        None => next.run(request).await,
        Some(refusal) => {
            refusal.reason().count();
            refusal.into_response()
        }
    }
}
