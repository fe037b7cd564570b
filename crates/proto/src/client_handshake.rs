//! Client side of the WebSocket opening handshake (RFC 6455 4.1), used by the load tester:
//! build the upgrade request and check the server's 101 answer.

use crate::base64;
use crate::handshake::{
    HandshakeError, MAX_HANDSHAKE_BYTES, MAX_HEADERS, has_token, header_values,
};

/// The upgrade request for `path` on `host` with `Sec-WebSocket-Key: key`.
pub fn client_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
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

/// Checks the server's response to a request sent with `key`: status 101, upgrade headers
/// and `Sec-WebSocket-Accept`. A non-101 status is `Rejected(status)`.
pub fn parse_response(buf: &[u8], key: &str) -> Result<ClientHandshakeStatus, HandshakeError> {
    let window = &buf[..buf.len().min(MAX_HANDSHAKE_BYTES)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let consumed = match response.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if window.len() < MAX_HANDSHAKE_BYTES => {
            return Ok(ClientHandshakeStatus::Partial);
        }
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::TooLarge);
        }
        Err(_) => return Err(HandshakeError::Malformed),
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
