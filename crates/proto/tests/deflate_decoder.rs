//! Decoder tests with permessage-deflate enabled: compressed frames in, inflated messages
//! and protocol errors out, whole and byte by byte.

mod common;

use common::{Got, HELLO, MASK, MAX, Outcome, feed_whole, random_bytes, raw_frame};
use ringcast_proto::{
    Decoder, OpCode, ProtocolError, Role, code, deflate_message, encode_compressed_frame,
};

fn deflate_decoder(role: Role, max: usize) -> Decoder {
    let mut decoder = Decoder::new(role, max);
    assert!(!decoder.deflate_enabled());
    decoder.enable_deflate();
    assert!(decoder.deflate_enabled());
    decoder
}

/// Feeds `bytes` in one piece; checks that an idle decoder holds no heap.
fn decode_whole(mut decoder: Decoder, bytes: &[u8]) -> Outcome {
    let (got, result) = feed_whole(&mut decoder, bytes);
    if result.is_ok() && !got.iter().any(|g| matches!(g, Got::Close(_))) {
        assert!(decoder.is_idle());
        assert_eq!(decoder.buffered_bytes(), 0, "heap held while idle");
    }
    (got, result)
}

/// Feeds `bytes` one byte at a time, stopping at the first error.
fn decode_bytewise(mut decoder: Decoder, bytes: &[u8]) -> Outcome {
    let mut got = Vec::new();
    for &byte in bytes {
        let result = decoder.feed(&mut [byte], &mut |m| got.push(Got::of(m)));
        if result.is_err() {
            return (got, result);
        }
    }
    (got, Ok(()))
}

/// Server-side decode with deflate enabled; checks that byte-by-byte feeding agrees.
fn server_decode(bytes: &[u8]) -> Outcome {
    let whole = decode_whole(deflate_decoder(Role::Server, MAX), bytes);
    let bytewise = decode_bytewise(deflate_decoder(Role::Server, MAX), bytes);
    assert_eq!(whole, bytewise, "whole vs byte-by-byte");
    whole
}

fn compressed(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_compressed_frame(&mut out, opcode, payload, Some(MASK));
    out
}

fn error_of(bytes: &[u8]) -> ProtocolError {
    match server_decode(bytes) {
        (_, Err(e)) => e,
        (got, Ok(())) => panic!("expected an error, got {got:?}"),
    }
}

#[test]
fn compressed_single_frame_text() {
    assert_eq!(
        server_decode(&compressed(OpCode::Text, &HELLO)),
        (vec![Got::Text(b"Hello".to_vec())], Ok(()))
    );
    let text = "héllo wörld, ".repeat(500);
    let frame = compressed(OpCode::Text, &deflate_message(text.as_bytes(), 15));
    assert!(frame.len() < text.len() / 4);
    assert_eq!(
        server_decode(&frame),
        (vec![Got::Text(text.into_bytes())], Ok(()))
    );
}

#[test]
fn compressed_empty_messages() {
    let mut bytes = compressed(OpCode::Text, &deflate_message(b"", 15));
    bytes.extend(compressed(OpCode::Binary, &[0x00]));
    assert_eq!(
        server_decode(&bytes),
        (vec![Got::Text(vec![]), Got::Binary(vec![])], Ok(()))
    );
}

#[test]
fn compressed_binary_every_window() {
    for window_bits in 8..=15 {
        let payload = random_bytes(5000, u64::from(window_bits));
        let mut bytes = compressed(OpCode::Binary, &deflate_message(&payload, window_bits));
        bytes.extend(raw_frame(0x82, b"plain"));
        assert_eq!(
            server_decode(&bytes),
            (
                vec![Got::Binary(payload), Got::Binary(b"plain".to_vec())],
                Ok(())
            ),
            "window {window_bits}"
        );
    }
}

#[test]
fn fragmented_compressed_message_with_interleaved_ping() {
    let text = "fragmented and compressed ".repeat(40);
    let deflated = deflate_message(text.as_bytes(), 15);
    let (a, rest) = deflated.split_at(3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut bytes = raw_frame(0x41, a); // RSV1 | Text, no FIN
    bytes.extend(raw_frame(0x00, b)); // Continuation
    bytes.extend(raw_frame(0x89, b"ping")); // Ping in between
    bytes.extend(raw_frame(0x80, c)); // Continuation, FIN
    bytes.extend(raw_frame(0x81, b"after")); // uncompressed text still works
    assert_eq!(
        server_decode(&bytes),
        (
            vec![
                Got::Ping(b"ping".to_vec()),
                Got::Text(text.into_bytes()),
                Got::Text(b"after".to_vec()),
            ],
            Ok(())
        )
    );
}

#[test]
fn fragmented_compressed_binary_with_empty_fragments() {
    let payload = random_bytes(300, 9);
    let deflated = deflate_message(&payload, 12);
    let mut bytes = raw_frame(0x42, b""); // RSV1 | Binary, no FIN, empty
    for chunk in deflated.chunks(7) {
        bytes.extend(raw_frame(0x00, chunk));
    }
    bytes.extend(raw_frame(0x80, b""));
    assert_eq!(server_decode(&bytes), (vec![Got::Binary(payload)], Ok(())));
}

#[test]
fn uncompressed_fragments_are_untouched_with_deflate_enabled() {
    let mut bytes = raw_frame(0x01, "hé".as_bytes());
    bytes.extend(raw_frame(0x80, "llo".as_bytes()));
    assert_eq!(
        server_decode(&bytes),
        (vec![Got::Text("héllo".as_bytes().to_vec())], Ok(()))
    );
    // Invalid UTF-8 in an uncompressed text still fails.
    assert_eq!(
        error_of(&raw_frame(0x81, &[0xff])),
        ProtocolError::InvalidUtf8
    );
}

#[test]
fn rsv1_on_control_frames_is_a_protocol_error() {
    for first_byte in [0xc9, 0xca, 0xc8] {
        let error = error_of(&raw_frame(first_byte, b""));
        assert_eq!(error, ProtocolError::ReservedBits, "{first_byte:#x}");
        assert_eq!(error.close_code(), code::PROTOCOL_ERROR);
    }
}

#[test]
fn rsv1_on_continuation_is_a_protocol_error() {
    let deflated = deflate_message(b"some text here", 15);
    let (a, b) = deflated.split_at(4);
    let mut bytes = raw_frame(0x41, a);
    bytes.extend(raw_frame(0xc0, b)); // RSV1 | FIN | Continuation
    assert_eq!(error_of(&bytes), ProtocolError::ReservedBits);
    let mut bytes = raw_frame(0x01, b"plain");
    bytes.extend(raw_frame(0xc0, &HELLO));
    assert_eq!(error_of(&bytes), ProtocolError::ReservedBits);
}

#[test]
fn rsv2_and_rsv3_stay_errors() {
    for first_byte in [0xa1, 0x91, 0xe1, 0xf1] {
        assert_eq!(
            error_of(&raw_frame(first_byte, b"x")),
            ProtocolError::ReservedBits
        );
    }
}

#[test]
fn rsv1_without_negotiation_is_a_protocol_error() {
    let mut decoder = Decoder::new(Role::Server, MAX);
    let mut input = compressed(OpCode::Text, &HELLO);
    let result = decoder.feed(&mut input, &mut |_| panic!("no message expected"));
    assert_eq!(result, Err(ProtocolError::ReservedBits));
    assert_eq!(
        ProtocolError::ReservedBits.close_code(),
        code::PROTOCOL_ERROR
    );
}

#[test]
fn invalid_utf8_after_inflating_is_1007() {
    let bad = deflate_message(&[b'a', 0xc3, 0x28, b'b'], 15);
    let error = error_of(&compressed(OpCode::Text, &bad));
    assert_eq!(error, ProtocolError::InvalidUtf8);
    assert_eq!(error.close_code(), code::INVALID_PAYLOAD);
    // Truncated code point at the end of a fragmented compressed text.
    let bad = deflate_message(&[b'a', 0xe2, 0x82], 15);
    let (a, b) = bad.split_at(2);
    let mut bytes = raw_frame(0x41, a);
    bytes.extend(raw_frame(0x80, b));
    assert_eq!(error_of(&bytes), ProtocolError::InvalidUtf8);
    // The same bytes as binary are fine.
    assert_eq!(
        server_decode(&compressed(OpCode::Binary, &bad)),
        (vec![Got::Binary(vec![b'a', 0xe2, 0x82])], Ok(()))
    );
}

#[test]
fn corrupt_compressed_data_is_a_protocol_error() {
    let error = error_of(&compressed(OpCode::Binary, &[0xff, 0xff, 0xff]));
    assert_eq!(error, ProtocolError::BadCompressedData);
    assert_eq!(error.close_code(), code::PROTOCOL_ERROR);
    assert_eq!(error.label(), "bad_compressed_data");
}

#[test]
fn inflated_size_is_limited() {
    let max = 64 << 10;
    let bomb = deflate_message(&vec![b'a'; 1 << 20], 15);
    assert!(bomb.len() < 4096);
    let frame = compressed(OpCode::Text, &bomb);
    let (got, result) = decode_whole(deflate_decoder(Role::Server, max), &frame);
    assert_eq!((got, result), (vec![], Err(ProtocolError::TooBig)));
    assert_eq!(ProtocolError::TooBig.close_code(), code::TOO_BIG);
    // Fragmented: the limit applies to the inflated whole.
    let (a, b) = bomb.split_at(bomb.len() / 2);
    let mut bytes = raw_frame(0x42, a);
    bytes.extend(raw_frame(0x80, b));
    let (_, result) = decode_bytewise(deflate_decoder(Role::Server, max), &bytes);
    assert_eq!(result, Err(ProtocolError::TooBig));
    // Exactly at the limit is fine.
    let exact = deflate_message(&vec![b'a'; max], 15);
    let (got, result) = decode_whole(
        deflate_decoder(Role::Server, max),
        &compressed(OpCode::Binary, &exact),
    );
    assert_eq!((got, result), (vec![Got::Binary(vec![b'a'; max])], Ok(())));
}

#[test]
fn incompressible_message_at_the_limit_fits() {
    let max = 10_000;
    let payload = random_bytes(max, 77);
    let deflated = deflate_message(&payload, 15);
    assert!(deflated.len() > max, "random data expands a little");
    let (got, result) = decode_whole(
        deflate_decoder(Role::Server, max),
        &compressed(OpCode::Binary, &deflated),
    );
    assert_eq!((got, result), (vec![Got::Binary(payload)], Ok(())));
    // A compressed payload far beyond what the limit allows is refused from its header.
    let huge = vec![0u8; 3 * max];
    let mut decoder = deflate_decoder(Role::Server, max);
    let header_only = compressed(OpCode::Binary, &huge);
    let mut input = header_only[..14].to_vec();
    assert_eq!(
        decoder.feed(&mut input, &mut |_| {}),
        Err(ProtocolError::TooBig)
    );
}

#[test]
fn client_role_inflates_unmasked_server_frames() {
    let payload = "from the server ".repeat(100);
    let mut frame = Vec::new();
    encode_compressed_frame(
        &mut frame,
        OpCode::Text,
        &deflate_message(payload.as_bytes(), 10),
        None,
    );
    let expected = (vec![Got::Text(payload.into_bytes())], Ok(()));
    assert_eq!(
        decode_whole(deflate_decoder(Role::Client, MAX), &frame),
        expected
    );
    assert_eq!(
        decode_bytewise(deflate_decoder(Role::Client, MAX), &frame),
        expected
    );
}

#[test]
fn close_after_compressed_messages() {
    let mut bytes = compressed(OpCode::Text, &HELLO);
    bytes.extend(raw_frame(0x88, &[0x03, 0xe8]));
    assert_eq!(
        server_decode(&bytes),
        (
            vec![
                Got::Text(b"Hello".to_vec()),
                Got::Close(Some((1000, String::new())))
            ],
            Ok(())
        )
    );
}

#[test]
fn decoder_stays_small() {
    assert!(size_of::<Decoder>() <= 64, "{}", size_of::<Decoder>());
}
