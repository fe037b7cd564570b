//! Inputs found by the fuzz targets in `crates/proto/fuzz`, kept as unit tests. Both were
//! header blocks whose last line ends with a bare LF (`\n\r\n`): httparse accepts bare LF
//! line ends (RFC 9112 2.2 allows it), and the targets wrongly expected every accepted head
//! to end with CRLFCRLF. The parsers are right; these pin that behaviour: the head is
//! consumed up to the blank line and every shorter prefix is incomplete.

use ringcast_proto::{
    ClientHandshakeStatus, HandshakeStatus, Route, parse_response, parse_upgrade,
};

/// artifacts/upgrade_request/crash-fe4d931752f454c286bab2c4bd8cd58529dff202
const REQUEST: &[u8] = b"GET /news?token=abc&x=1 HTTP/1.1\r\nHost: example.com\r\n\
Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGh/IHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nOrigin: https://app.example\r\n\
Sec-WebSoSec-WebSocket-Protocol: , chaen\n\r\n";

/// artifacts/upgrade_response/crash-e5457c7bc0cbacc2fe59eac3da687691f8646bf5
const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
Sec-WebSocket-Protocol: /echo\n\r\n";

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

#[test]
fn request_head_ending_in_a_bare_lf_is_accepted_whole_and_partial_before() {
    let upgrade = match parse_upgrade(REQUEST) {
        Ok(HandshakeStatus::Done(upgrade)) => upgrade,
        other => panic!("expected Done, got {other:?}"),
    };
    assert_eq!(upgrade.consumed, REQUEST.len());
    assert_eq!(upgrade.route, Route::Channel("news".into()));
    assert_eq!(upgrade.query_param("token"), Some("abc"));
    assert_eq!(upgrade.origin.as_deref(), Some("https://app.example"));
    // The mangled header name is not Sec-WebSocket-Protocol.
    assert!(upgrade.protocols.is_empty());
    for end in 0..REQUEST.len() {
        assert!(
            matches!(parse_upgrade(&REQUEST[..end]), Ok(HandshakeStatus::Partial)),
            "prefix of {end} bytes"
        );
    }
}

#[test]
fn response_head_ending_in_a_bare_lf_is_accepted_whole_and_partial_before() {
    assert_eq!(
        parse_response(RESPONSE, KEY),
        Ok(ClientHandshakeStatus::Done {
            consumed: RESPONSE.len()
        })
    );
    for end in 0..RESPONSE.len() {
        assert_eq!(
            parse_response(&RESPONSE[..end], KEY),
            Ok(ClientHandshakeStatus::Partial),
            "prefix of {end} bytes"
        );
    }
}
