//! Fuzz target for the frame decoder, server and client role, with or without
//! permessage-deflate. The first byte picks the role, the message limit and the extension,
//! the next two a split point; the rest is the byte stream. Besides not panicking, the
//! decoder must give the same messages and error fed whole as fed in two pieces, deliver
//! only valid messages within the limit, and hold no memory when idle and never more than
//! twice the largest message it may buffer (the limit, or for a compressed message its
//! compressed limit) plus one control frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast_proto::deflate::max_compressed_len;
use ringcast_proto::{Decoder, Message, ProtocolError, Role};

/// Limits around the interesting edges (control frame size, length encodings).
const LIMITS: [usize; 8] = [0, 16, 125, 126, 1024, 65_535, 65_536, 1 << 20];

/// Longest control frame (2 + 4 mask + 125 payload bytes), which may sit between fragments.
const MAX_CONTROL_FRAME: usize = 131;

/// Owned messages (kind, bytes) and the first error.
type Outcome = (Vec<(u8, Vec<u8>)>, Result<(), ProtocolError>);

fn check_message(message: &Message<'_>, limit: usize) -> (u8, Vec<u8>) {
    match message {
        Message::Text(b) => {
            assert!(b.len() <= limit);
            assert!(std::str::from_utf8(b).is_ok());
            (1, b.to_vec())
        }
        Message::Binary(b) => {
            assert!(b.len() <= limit);
            (2, b.to_vec())
        }
        Message::Ping(b) => {
            assert!(b.len() <= 125);
            (9, b.to_vec())
        }
        Message::Pong(b) => {
            assert!(b.len() <= 125);
            (10, b.to_vec())
        }
        Message::Close(None) => (8, Vec::new()),
        Message::Close(Some(close)) => {
            assert!(ringcast_proto::is_valid_received_code(close.code));
            let mut bytes = close.code.to_be_bytes().to_vec();
            bytes.extend_from_slice(close.reason.as_bytes());
            assert!(bytes.len() <= 125);
            (8, bytes)
        }
    }
}

fn feed(decoder: &mut Decoder, pieces: &[&[u8]], limit: usize) -> Outcome {
    let buffered_limit = if decoder.deflate_enabled() {
        max_compressed_len(limit)
    } else {
        limit
    };
    let mut got = Vec::new();
    for piece in pieces {
        let mut input = piece.to_vec();
        let result = decoder.feed(&mut input, &mut |m| got.push(check_message(&m, limit)));
        assert!(decoder.buffered_bytes() <= 2 * (buffered_limit + MAX_CONTROL_FRAME));
        if decoder.is_idle() {
            assert_eq!(decoder.buffered_bytes(), 0);
        }
        if result.is_err() {
            assert_eq!(decoder.buffered_bytes(), 0);
            return (got, result);
        }
    }
    (got, Ok(()))
}

fuzz_target!(|data: &[u8]| {
    let [config, split_lo, split_hi, stream @ ..] = data else {
        return;
    };
    let role = if config & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let limit = LIMITS[usize::from(config >> 1) % LIMITS.len()];
    let deflate = config & 0x10 != 0;
    let split = usize::from(u16::from_le_bytes([*split_lo, *split_hi])) % (stream.len() + 1);
    let (head, tail) = stream.split_at(split);
    let decoder = || {
        let mut decoder = Decoder::new(role, limit);
        if deflate {
            decoder.enable_deflate();
        }
        decoder
    };
    let whole = feed(&mut decoder(), &[stream], limit);
    let pieces = feed(&mut decoder(), &[head, tail], limit);
    assert_eq!(whole, pieces);
});
