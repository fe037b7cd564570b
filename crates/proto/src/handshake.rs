//! Server side of the WebSocket opening handshake (RFC 6455 4.2): parse the HTTP/1.1
//! upgrade request, route it, and build the 101 answer or an HTTP error answer.

use crate::base64;
use crate::channel::is_valid_channel;

/// Largest request header block accepted, in bytes.
pub const MAX_HANDSHAKE_BYTES: usize = 8192;

/// Most headers accepted in a request or response.
pub(crate) const MAX_HEADERS: usize = 64;

/// Where an upgraded connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/echo`: messages are sent back to the sender.
    Echo,
    /// `/<name>`: subscribe to channel `name`.
    Channel(String),
    /// `/` (channels come from the query string, e.g. `/?channels=a,b`, or later from
    /// client commands).
    Root,
}

/// A successful upgrade request.
#[derive(Debug)]
pub struct Upgrade {
    /// Where the connection goes.
    pub route: Route,
    /// Full `HTTP/1.1 101 Switching Protocols` response to send (no subprotocol).
    pub response: Vec<u8>,
    /// Bytes of the request, including the final CRLFCRLF.
    pub consumed: usize,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// The query string after `?`, if any.
    pub query: Option<String>,
    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in order.
    pub protocols: Vec<String>,
    /// The raw `Sec-WebSocket-Extensions` header values, one per header, in order (each
    /// may hold several comma-separated offers; see
    /// [`crate::deflate::negotiate_deflate`]).
    pub extensions: Vec<String>,
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
}

impl Upgrade {
    /// The 101 response selecting `protocol` (which must be one of `protocols`).
    pub fn response_with_protocol(&self, protocol: &str) -> Vec<u8> {
        switching_response(&self.accept, Some(protocol), None)
    }

    /// The 101 response selecting `protocol` (one of `protocols`) if any, and accepting
    /// `extension` (a `Sec-WebSocket-Extensions` answer value, e.g. from
    /// [`crate::deflate::negotiate_deflate`]) if any.
    pub fn response_with(&self, protocol: Option<&str>, extension: Option<&str>) -> Vec<u8> {
        switching_response(&self.accept, protocol, extension)
    }

    /// The value of query parameter `name` (no percent-decoding: the values this
    /// server reads are URL-safe).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }
}

fn switching_response(accept: &str, protocol: Option<&str>, extension: Option<&str>) -> Vec<u8> {
    let protocol = protocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    let extension = extension
        .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{protocol}{extension}\r\n"
    )
    .into_bytes()
}

/// Progress of parsing an upgrade request.
#[derive(Debug)]
pub enum HandshakeStatus {
    /// The header block is not complete yet; call again with more bytes.
    Partial,
    /// The request is a valid upgrade.
    Done(Upgrade),
}

/// Why a handshake failed (server or client side).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// Method is not GET.
    #[error("method is not GET")]
    NotGet,
    /// Not an HTTP/1.1 message.
    #[error("not HTTP/1.1")]
    NotHttp11,
    /// Not parseable as HTTP.
    #[error("malformed HTTP")]
    Malformed,
    /// No complete header block within MAX_HANDSHAKE_BYTES (or too many headers).
    #[error("request headers too large")]
    TooLarge,
    /// Missing or wrong `Upgrade: websocket` / `Connection: upgrade`.
    #[error("not a websocket upgrade")]
    NotUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13.
    #[error("unsupported websocket version")]
    BadVersion,
    /// No `Sec-WebSocket-Key`.
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
    /// `Sec-WebSocket-Key` is not base64 of exactly 16 bytes.
    #[error("invalid Sec-WebSocket-Key")]
    InvalidKey,
    /// No `Host` header.
    #[error("missing Host")]
    MissingHost,
    /// Path names an invalid channel.
    #[error("invalid channel name")]
    BadChannel,
    /// Path is `/` or does not start with `/`.
    #[error("not found")]
    NotFound,
    /// Client side: the server answered with this non-101 status.
    #[error("server rejected the upgrade with status {0}")]
    Rejected(u16),
    /// Client side: `Sec-WebSocket-Accept` missing or wrong.
    #[error("bad Sec-WebSocket-Accept")]
    BadAccept,
}

impl HandshakeError {
    /// Every error a server answers a request with (not the client-side `Rejected` and
    /// `BadAccept`), for exporting each label at 0 from startup.
    pub const SERVER_SIDE: [HandshakeError; 11] = [
        Self::NotGet,
        Self::NotHttp11,
        Self::Malformed,
        Self::TooLarge,
        Self::NotUpgrade,
        Self::BadVersion,
        Self::MissingKey,
        Self::InvalidKey,
        Self::MissingHost,
        Self::BadChannel,
        Self::NotFound,
    ];

    /// HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotGet => 405,
            Self::TooLarge => 431,
            Self::BadVersion => 426,
            Self::NotFound => 404,
            Self::Rejected(status) => *status,
            Self::BadAccept => 502,
            Self::NotHttp11
            | Self::Malformed
            | Self::NotUpgrade
            | Self::MissingKey
            | Self::InvalidKey
            | Self::MissingHost
            | Self::BadChannel => 400,
        }
    }

    /// snake_case metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotGet => "not_get",
            Self::NotHttp11 => "not_http11",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::NotUpgrade => "not_upgrade",
            Self::BadVersion => "bad_version",
            Self::MissingKey => "missing_key",
            Self::InvalidKey => "invalid_key",
            Self::MissingHost => "missing_host",
            Self::BadChannel => "bad_channel",
            Self::NotFound => "not_found",
            Self::Rejected(_) => "rejected",
            Self::BadAccept => "bad_accept",
        }
    }

    /// Complete HTTP/1.1 error response (426 adds `Sec-WebSocket-Version: 13`).
    pub fn response(&self) -> Vec<u8> {
        let status = self.status();
        let body = format!("{self}\n");
        let extra = if status == 426 {
            "Sec-WebSocket-Version: 13\r\n"
        } else {
            ""
        };
        build_response(status, reason_phrase(status), extra, &body)
    }
}

/// Standard reason phrase for the statuses this crate produces.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn build_response(status: u16, reason: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    let allow = if status == 405 { "Allow: GET\r\n" } else { "" };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{allow}{extra_headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A complete plain HTTP error response (e.g. 503 when the server is full).
pub fn http_error_response(status: u16, reason: &str, body: &str) -> Vec<u8> {
    build_response(status, reason, "", body)
}

/// Whether any header named `name` has `token` in its comma-separated value
/// (case-insensitive).
pub(crate) fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Values of all headers named `name`, whitespace-trimmed.
pub(crate) fn header_values<'h>(
    headers: &'h [httparse::Header<'_>],
    name: &'h str,
) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim_ascii())
}

/// httparse's verdict on a head read from a window of `window_len` bytes (at most
/// [`MAX_HANDSHAKE_BYTES`] of the input): its length when complete, `None` while more
/// bytes may still complete it, else why it is refused (too large or malformed).
pub(crate) fn head_length(
    parsed: httparse::Result<usize>,
    window_len: usize,
) -> Result<Option<usize>, HandshakeError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if window_len < MAX_HANDSHAKE_BYTES => Ok(None),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            Err(HandshakeError::TooLarge)
        }
        Err(_) => Err(HandshakeError::Malformed),
    }
}

/// Parses an HTTP/1.1 upgrade request from the start of `buf` (httparse, max 64 headers).
/// Partial if the header block is not complete yet and buf.len() < MAX_HANDSHAKE_BYTES.
pub fn parse_upgrade(buf: &[u8]) -> Result<HandshakeStatus, HandshakeError> {
    let window = &buf[..buf.len().min(MAX_HANDSHAKE_BYTES)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let Some(consumed) = head_length(request.parse(window), window.len())? else {
        return Ok(HandshakeStatus::Partial);
    };
    if request.method != Some("GET") {
        return Err(HandshakeError::NotGet);
    }
    if request.version != Some(1) {
        return Err(HandshakeError::NotHttp11);
    }
    let headers = request.headers;
    if header_values(headers, "host").all(<[u8]>::is_empty) {
        return Err(HandshakeError::MissingHost);
    }
    if !has_token(headers, "upgrade", "websocket") || !has_token(headers, "connection", "upgrade") {
        return Err(HandshakeError::NotUpgrade);
    }
    let mut versions = header_values(headers, "sec-websocket-version");
    if versions.next() != Some(b"13") || versions.next().is_some() {
        return Err(HandshakeError::BadVersion);
    }
    let mut keys = header_values(headers, "sec-websocket-key");
    let key = keys.next().ok_or(HandshakeError::MissingKey)?;
    if !base64::is_16_bytes(key) || keys.next().is_some() {
        return Err(HandshakeError::InvalidKey);
    }
    let target = request.path.unwrap_or("");
    let route = route_for(target)?;
    let accept = tungstenite::handshake::derive_accept_key(key);
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    Ok(HandshakeStatus::Done(Upgrade {
        route,
        response: switching_response(&accept, None, None),
        consumed,
        origin: header_values(headers, "origin").next().map(text),
        query: target.split_once('?').map(|(_, q)| q.to_owned()),
        protocols: header_values(headers, "sec-websocket-protocol")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|p| text(p.trim_ascii()))
            .filter(|p| !p.is_empty())
            .collect(),
        extensions: header_values(headers, "sec-websocket-extensions")
            .filter(|v| !v.is_empty())
            .map(text)
            .collect(),
        accept,
    }))
}

/// Route for a request target; the query string is ignored.
fn route_for(target: &str) -> Result<Route, HandshakeError> {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let name = match path.strip_prefix('/') {
        Some("") => return Ok(Route::Root),
        None => return Err(HandshakeError::NotFound),
        Some(name) => name,
    };
    if name == "echo" {
        Ok(Route::Echo)
    } else if is_valid_channel(name) {
        Ok(Route::Channel(name.to_owned()))
    } else {
        Err(HandshakeError::BadChannel)
    }
}

#[cfg(test)]
mod server_side_tests {
    use super::HandshakeError;

    #[test]
    fn server_side_lists_every_error_a_server_answers_once() {
        // No wildcard: a new variant does not compile here until it is placed.
        let position = |err: &HandshakeError| match err {
            HandshakeError::NotGet => Some(0),
            HandshakeError::NotHttp11 => Some(1),
            HandshakeError::Malformed => Some(2),
            HandshakeError::TooLarge => Some(3),
            HandshakeError::NotUpgrade => Some(4),
            HandshakeError::BadVersion => Some(5),
            HandshakeError::MissingKey => Some(6),
            HandshakeError::InvalidKey => Some(7),
            HandshakeError::MissingHost => Some(8),
            HandshakeError::BadChannel => Some(9),
            HandshakeError::NotFound => Some(10),
            HandshakeError::Rejected(_) | HandshakeError::BadAccept => None,
        };
        for (i, err) in HandshakeError::SERVER_SIDE.iter().enumerate() {
            assert_eq!(position(err), Some(i), "{err:?}");
        }
    }
}
