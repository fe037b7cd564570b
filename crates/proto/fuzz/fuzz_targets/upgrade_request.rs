//! Fuzz target for the server's upgrade request parser (`parse_upgrade`) and its
//! permessage-deflate negotiation (`negotiate_deflate`). Besides not panicking: an accepted
//! request parses the same from exactly its own bytes, is incomplete (never an error) when
//! cut short, and its answer is a 101; a refused one gets a complete HTTP error answer; an
//! agreed extension answer is one the client side accepts, with the same window.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast_proto::{HandshakeStatus, client_deflate_params, negotiate_deflate, parse_upgrade};

/// Whether `head` ends with an empty line (lines may end with CRLF or a bare LF, which
/// RFC 9112 2.2 lets a recipient accept, and httparse does).
fn ends_with_blank_line(head: &[u8]) -> bool {
    head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n")
}

fuzz_target!(|data: &[u8]| {
    let upgrade = match parse_upgrade(data) {
        Ok(HandshakeStatus::Done(upgrade)) => upgrade,
        Ok(HandshakeStatus::Partial) => return,
        Err(error) => {
            assert!(error.response().starts_with(b"HTTP/1.1 "));
            assert!((400..600).contains(&error.status()));
            return;
        }
    };
    let consumed = upgrade.consumed;
    assert!(consumed <= data.len());
    assert!(ends_with_blank_line(&data[..consumed]));
    assert!(upgrade.response.starts_with(b"HTTP/1.1 101 "));
    match parse_upgrade(&data[..consumed]) {
        Ok(HandshakeStatus::Done(again)) => assert_eq!(again.route, upgrade.route),
        other => panic!("own bytes gave {other:?}"),
    }
    for end in [0, 1, consumed / 2, consumed - 2, consumed - 1] {
        assert!(matches!(
            parse_upgrade(&data[..end]),
            Ok(HandshakeStatus::Partial)
        ));
    }
    let _ = upgrade.query_param("token");
    if let Some((params, answer)) = negotiate_deflate(&upgrade.extensions) {
        let client = client_deflate_params(&answer).expect("the client accepts our answer");
        assert_eq!(
            params.server_max_window_bits,
            client.server_max_window_bits.max(9)
        );
        let response =
            upgrade.response_with(upgrade.protocols.first().map(String::as_str), Some(&answer));
        assert!(response.starts_with(b"HTTP/1.1 101 "));
    }
    if let Some(protocol) = upgrade.protocols.first() {
        assert!(
            upgrade
                .response_with_protocol(protocol)
                .starts_with(b"HTTP/1.1 101 ")
        );
    }
});
