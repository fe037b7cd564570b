//! Client side of the WebSocket opening handshake (RFC 6455 4.1), used by the load tester:
//! build the upgrade request and check the server's 101 answer.

use crate::base64;
use crate::handshake::{
    HandshakeError, MAX_HANDSHAKE_BYTES, MAX_HEADERS, has_token, head_length, header_values,
};

/// The upgrade request for `path` on `host` with `Sec-WebSocket-Key: key`.
pub fn client_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    client_request_with_extensions(host, path, key, "")
}

/// Like [`client_request`], also offering `extensions` in `Sec-WebSocket-Extensions`
/// (e.g. [`crate::deflate::CLIENT_OFFER`]); no such header if empty.
pub fn client_request_with_extensions(
    host: &str,
    path: &str,
    key: &str,
    extensions: &str,
) -> Vec<u8> {
    let extensions = if extensions.is_empty() {
        String::new()
    } else {
        format!("Sec-WebSocket-Extensions: {extensions}\r\n")
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
    )
    .into_bytes()
}

/// The `Sec-WebSocket-Extensions` the server accepted in the response at the start of
/// `buf` (several headers joined with ", "), or `None` if there is none or the response
/// is incomplete or malformed. Read it after [`parse_response`] returned `Done`, and give
/// it to [`crate::deflate::client_deflate_params`].
pub fn accepted_extension(buf: &[u8]) -> Option<String> {
    let window = &buf[..buf.len().min(MAX_HANDSHAKE_BYTES)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    if !matches!(response.parse(window), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let values: Vec<String> = header_values(response.headers, "sec-websocket-extensions")
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// splitmix64 step: a well-mixed 64-bit value from a counter.
fn splitmix64(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A `Sec-WebSocket-Key`: base64 of 16 bytes derived from `seed`.
pub fn generate_key(seed: u64) -> String {
    let first = splitmix64(seed.wrapping_add(0x9e37_79b9_7f4a_7c15));
    let second = splitmix64(first.wrapping_add(0x9e37_79b9_7f4a_7c15));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&first.to_le_bytes());
    bytes[8..].copy_from_slice(&second.to_le_bytes());
    base64::encode(&bytes)
}

/// Progress of parsing the server's handshake response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientHandshakeStatus {
    /// The header block is not complete yet.
    Partial,
    /// The server accepted; `consumed` bytes of `buf` were the response.
    Done {
        /// Bytes of the response including the final CRLFCRLF.
        consumed: usize,
    },
}

/// The seconds of `Retry-After` in a complete `503` response head in `buf` (what a
/// server over its handshake budget answers: come back later), if it is one; `None` for
/// any other response, an incomplete head, or a value that is not plain seconds.
pub fn retry_after_secs(buf: &[u8]) -> Option<u64> {
    let window = &buf[..buf.len().min(MAX_HANDSHAKE_BYTES)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    if !response.parse(window).ok()?.is_complete() || response.code != Some(503) {
        return None;
    }
    let mut values = header_values(response.headers, "retry-after");
    let value = std::str::from_utf8(values.next()?).ok()?;
    value.trim().parse().ok()
}

/// Checks the server's response to a request sent with `key`: status 101, upgrade headers
/// and `Sec-WebSocket-Accept`. A non-101 status is `Rejected(status)`.
pub fn parse_response(buf: &[u8], key: &str) -> Result<ClientHandshakeStatus, HandshakeError> {
    let window = &buf[..buf.len().min(MAX_HANDSHAKE_BYTES)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let Some(consumed) = head_length(response.parse(window), window.len())? else {
        return Ok(ClientHandshakeStatus::Partial);
    };
    if response.version != Some(1) {
        return Err(HandshakeError::NotHttp11);
    }
    match response.code {
        Some(101) => {}
        Some(status) => return Err(HandshakeError::Rejected(status)),
        None => return Err(HandshakeError::Malformed),
    }
    let headers = response.headers;
    if !has_token(headers, "upgrade", "websocket") || !has_token(headers, "connection", "upgrade") {
        return Err(HandshakeError::NotUpgrade);
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut accepts = header_values(headers, "sec-websocket-accept");
    if accepts.next() != Some(expected.as_bytes()) || accepts.next().is_some() {
        return Err(HandshakeError::BadAccept);
    }
    Ok(ClientHandshakeStatus::Done { consumed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_from_complete_503_heads_only() {
        let busy =
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(retry_after_secs(busy), Some(3));
        assert_eq!(retry_after_secs(&busy[..30]), None, "incomplete");
        let other = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\n\r\n";
        assert_eq!(retry_after_secs(other), None);
        let date = b"HTTP/1.1 503 x\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n";
        assert_eq!(retry_after_secs(date), None);
        assert_eq!(retry_after_secs(b"HTTP/1.1 503 x\r\n\r\n"), None);
    }
}
