//! Fuzz target for the client's upgrade response parser (`parse_response`) with a fixed
//! key, and the permessage-deflate answer it may carry (`accepted_extension`,
//! `client_deflate_params`). Besides not panicking: an accepted response parses the same
//! from exactly its own bytes and is incomplete (never an error) when cut short; a
//! rejection names a non-101 status; agreed windows are 8..=15.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast_proto::{
    ClientHandshakeStatus, HandshakeError, accepted_extension, client_deflate_params,
    parse_response,
};

/// The RFC 6455 sample key; its accept value is `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Whether `head` ends with an empty line (lines may end with CRLF or a bare LF, which
/// RFC 9112 2.2 lets a recipient accept, and httparse does).
fn ends_with_blank_line(head: &[u8]) -> bool {
    head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n")
}

fuzz_target!(|data: &[u8]| {
    let consumed = match parse_response(data, KEY) {
        Ok(ClientHandshakeStatus::Done { consumed }) => consumed,
        Ok(ClientHandshakeStatus::Partial) => return,
        Err(HandshakeError::Rejected(status)) => {
            assert_ne!(status, 101);
            return;
        }
        Err(_) => return,
    };
    assert!(consumed <= data.len());
    assert!(ends_with_blank_line(&data[..consumed]));
    assert_eq!(
        parse_response(&data[..consumed], KEY),
        Ok(ClientHandshakeStatus::Done { consumed })
    );
    for end in [0, 1, consumed / 2, consumed - 2, consumed - 1] {
        assert_eq!(
            parse_response(&data[..end], KEY),
            Ok(ClientHandshakeStatus::Partial)
        );
    }
    if let Some(params) = accepted_extension(data).and_then(|e| client_deflate_params(&e)) {
        assert!((8..=15).contains(&params.server_max_window_bits));
        assert!((8..=15).contains(&params.client_max_window_bits));
    }
});
