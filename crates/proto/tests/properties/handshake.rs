//! The handshake parsers never panic on arbitrary or corrupted input; a request or response
//! that parses is also parsed the same from exactly its own bytes and is incomplete (never
//! an error) at every shorter prefix, so a handshake read in pieces is never refused;
//! requests that vary in header case, order, spacing and extra headers are accepted; and
//! any permessage-deflate answer the server gives to any offer is one a client accepts.

use proptest::collection::vec;
use proptest::prelude::*;
use ringcast_proto::{
    ClientHandshakeStatus, HandshakeError, HandshakeStatus, Route, client_deflate_params,
    is_valid_channel, negotiate_deflate, parse_response, parse_upgrade,
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn valid_request() -> Vec<u8> {
    format!(
        "GET /news?token=x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://o\r\nSec-WebSocket-Protocol: a, b\r\n\r\n"
    )
    .into_bytes()
}

fn valid_response() -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
    )
    .into_bytes()
}

/// Arbitrary bytes, or a valid request/response with some bytes overwritten, some cut off
/// and arbitrary bytes appended.
fn corrupted(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let edited = (
        vec((any::<usize>(), any::<u8>()), 0..4),
        any::<usize>(),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(move |(sets, keep, tail)| {
            let mut bytes = valid.clone();
            let len = bytes.len();
            for (at, value) in sets {
                bytes[at % len] = value;
            }
            bytes.truncate(keep % (len + 1));
            bytes.extend(tail);
            bytes
        });
    prop_oneof![vec(any::<u8>(), 0..1024), edited]
}

/// Whether `head` ends with an empty line (lines may end with CRLF or a bare LF, which
/// RFC 9112 2.2 lets a recipient accept, and httparse does).
fn ends_with_blank_line(head: &[u8]) -> bool {
    head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n")
}

/// Checks the prefix property of a server-side parse and returns the parsed route.
fn check_upgrade(bytes: &[u8]) -> Result<Option<Route>, TestCaseError> {
    let upgrade = match parse_upgrade(bytes) {
        Ok(HandshakeStatus::Done(upgrade)) => upgrade,
        Ok(HandshakeStatus::Partial) => return Ok(None),
        Err(error) => {
            prop_assert!(error.response().starts_with(b"HTTP/1.1 "));
            prop_assert!(!error.label().is_empty());
            return Ok(None);
        }
    };
    prop_assert!(upgrade.consumed <= bytes.len());
    prop_assert!(ends_with_blank_line(&bytes[..upgrade.consumed]));
    prop_assert!(upgrade.response.starts_with(b"HTTP/1.1 101 "));
    match parse_upgrade(&bytes[..upgrade.consumed]) {
        Ok(HandshakeStatus::Done(again)) => {
            prop_assert_eq!(&again.route, &upgrade.route);
            prop_assert_eq!(&again.response, &upgrade.response);
        }
        other => prop_assert!(false, "own bytes gave {:?}", other),
    }
    for end in 0..upgrade.consumed {
        let prefix = parse_upgrade(&bytes[..end]);
        prop_assert!(
            matches!(prefix, Ok(HandshakeStatus::Partial)),
            "prefix of {} bytes gave {:?}",
            end,
            prefix
        );
    }
    Ok(Some(upgrade.route))
}

fn check_response(bytes: &[u8]) -> Result<(), TestCaseError> {
    let consumed = match parse_response(bytes, KEY) {
        Ok(ClientHandshakeStatus::Done { consumed }) => consumed,
        Ok(ClientHandshakeStatus::Partial) => return Ok(()),
        Err(HandshakeError::Rejected(status)) => {
            prop_assert!(status != 101);
            return Ok(());
        }
        Err(_) => return Ok(()),
    };
    prop_assert!(consumed <= bytes.len());
    prop_assert!(ends_with_blank_line(&bytes[..consumed]));
    prop_assert_eq!(
        parse_response(&bytes[..consumed], KEY),
        Ok(ClientHandshakeStatus::Done { consumed })
    );
    for end in 0..consumed {
        prop_assert_eq!(
            parse_response(&bytes[..end], KEY),
            Ok(ClientHandshakeStatus::Partial)
        );
    }
    Ok(())
}

/// `name` with each ASCII letter's case chosen by the bits of `case`.
fn recase(name: &str, case: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if case >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// `Sec-WebSocket-Extensions` values: offers built from real extension and parameter
/// names with windows in and out of range, quoted or not, or arbitrary text.
fn extension_offers() -> impl Strategy<Value = Vec<String>> {
    let name = prop_oneof![
        Just("permessage-deflate".to_owned()),
        Just("PerMessage-Deflate".to_owned()),
        Just("x-webkit-deflate-frame".to_owned()),
        "[a-z-]{0,10}",
    ];
    let param = prop_oneof![
        Just("server_no_context_takeover".to_owned()),
        Just("client_no_context_takeover".to_owned()),
        Just("client_max_window_bits".to_owned()),
        (0u8..20).prop_map(|n| format!("server_max_window_bits={n}")),
        (0u8..20).prop_map(|n| format!("client_max_window_bits={n}")),
        (0u8..20).prop_map(|n| format!("server_max_window_bits=\"{n}\"")),
        "[ -~]{0,12}",
    ];
    let element = (name, vec(param, 0..4)).prop_map(|(name, params)| {
        std::iter::once(name)
            .chain(params)
            .collect::<Vec<_>>()
            .join("; ")
    });
    let header = prop_oneof![
        vec(element, 0..4).prop_map(|elements| elements.join(", ")),
        "\\PC{0,60}",
    ];
    vec(header, 0..3)
}

proptest! {
    #[test]
    fn deflate_answers_are_accepted_by_the_client(offers in extension_offers()) {
        let Some((params, answer)) = negotiate_deflate(&offers) else {
            return Ok(());
        };
        prop_assert!((9..=15).contains(&params.server_max_window_bits));
        prop_assert!((8..=15).contains(&params.client_max_window_bits));
        let client = client_deflate_params(&answer);
        prop_assert!(client.is_some(), "client refused {:?} for {:?}", answer, offers);
        let client = client.unwrap();
        prop_assert_eq!(params.server_max_window_bits, client.server_max_window_bits.max(9));
    }

    #[test]
    fn parse_upgrade_never_panics(bytes in corrupted(valid_request())) {
        check_upgrade(&bytes)?;
    }

    #[test]
    fn parse_response_never_panics(bytes in corrupted(valid_response())) {
        check_response(&bytes)?;
    }

    #[test]
    fn varied_valid_requests_are_accepted(
        channel in "[A-Za-z0-9_.:-]{1,40}", echo in any::<bool>(), case in any::<u64>(),
        spaces in vec(0usize..3, 5), shuffle in any::<u64>(),
        extra in vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,30}"), 0..5),
        query in proptest::option::of("[A-Za-z0-9=&_]{0,20}"), trailing in vec(any::<u8>(), 0..16),
    ) {
        let path = if echo { "echo".to_owned() } else { channel.clone() };
        let target = match &query {
            Some(q) => format!("/{path}?{q}"),
            None => format!("/{path}"),
        };
        let pad = |i: usize| " ".repeat(spaces[i]);
        let mut lines = vec![
            format!("{}:{}example.com{}", recase("host", case), pad(0), pad(1)),
            format!("{}: {}", recase("upgrade", case >> 8), recase("websocket", case >> 16)),
            format!("{}: keep-alive,{}{}", recase("connection", case >> 24), pad(2), recase("upgrade", case >> 32)),
            format!("{}:{}{KEY}", recase("sec-websocket-key", case >> 40), pad(3)),
            format!("{}: 13{}", recase("sec-websocket-version", case >> 48), pad(4)),
        ];
        for (name, value) in &extra {
            let lower = name.to_ascii_lowercase();
            if !["host", "upgrade", "connection"].contains(&lower.as_str())
                && !lower.starts_with("sec-websocket")
            {
                lines.push(format!("{name}: {}", value.trim()));
            }
        }
        let count = lines.len();
        for i in 0..count {
            let j = (shuffle >> (i * 4)) as usize % count;
            lines.swap(i, j);
        }
        let mut bytes = format!("GET {target} HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n")).into_bytes();
        bytes.extend(trailing);
        let expected = if echo { Route::Echo } else { Route::Channel(channel.clone()) };
        prop_assert!(echo || is_valid_channel(&channel));
        prop_assert_eq!(check_upgrade(&bytes)?, Some(expected));
    }
}
