//! Decoder tests: frames as byte strings in, messages and protocol errors out.

mod common;

use common::{Got, MASK, MAX, Outcome, feed_whole, next_random, raw_frame};
use ringcast_proto::{
    CloseFrame, Decoder, Message, OpCode, ProtocolError, Role, close_payload, encode_frame,
};

fn server_decode(bytes: &[u8]) -> Outcome {
    feed_whole(&mut Decoder::new(Role::Server, MAX), bytes)
}

fn frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, opcode, payload, Some(MASK));
    out
}

fn error_of(bytes: &[u8]) -> ProtocolError {
    match server_decode(bytes).1 {
        Err(e) => e,
        Ok(()) => panic!("expected an error for {bytes:x?}"),
    }
}

#[test]
fn decoder_is_small() {
    assert!(size_of::<Decoder>() <= 72, "{}", size_of::<Decoder>());
}

#[test]
fn masked_text_and_binary() {
    let rfc_hello = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        server_decode(&rfc_hello),
        (vec![Got::Text(b"Hello".to_vec())], Ok(()))
    );
    let mut two = frame(OpCode::Binary, &[1, 2, 3]);
    two.extend(frame(OpCode::Text, b""));
    assert_eq!(
        server_decode(&two),
        (vec![Got::Binary(vec![1, 2, 3]), Got::Text(vec![])], Ok(()))
    );
}

#[test]
fn extended_lengths() {
    for len in [126, 1000, 65535, 65536, 200_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let bytes = frame(OpCode::Binary, &payload);
        let (got, result) = server_decode(&bytes);
        assert_eq!(result, Ok(()));
        assert_eq!(got, vec![Got::Binary(payload)]);
    }
}

#[test]
fn fragmentation_with_interleaved_ping() {
    let mut bytes = raw_frame(0x01, b"Hel");
    bytes.extend(raw_frame(0x89, b"ping"));
    bytes.extend(raw_frame(0x00, b"lo "));
    bytes.extend(raw_frame(0x8a, b""));
    bytes.extend(raw_frame(0x80, "wörld".as_bytes()));
    bytes.extend(raw_frame(0x02, &[1]));
    bytes.extend(raw_frame(0x80, &[2]));
    let mut decoder = Decoder::new(Role::Server, MAX);
    let (got, result) = feed_whole(&mut decoder, &bytes);
    assert_eq!(result, Ok(()));
    assert_eq!(
        got,
        vec![
            Got::Ping(b"ping".to_vec()),
            Got::Pong(vec![]),
            Got::Text("Hello wörld".as_bytes().to_vec()),
            Got::Binary(vec![1, 2]),
        ]
    );
    assert!(decoder.is_idle());
    assert_eq!(decoder.buffered_bytes(), 0);
}

fn sample_stream() -> Vec<u8> {
    let mut bytes = raw_frame(0x01, "a€".as_bytes());
    bytes.extend(raw_frame(0x89, b"p"));
    bytes.extend(raw_frame(0x80, "😀b".as_bytes()));
    bytes.extend(frame(OpCode::Binary, &[9; 130]));
    bytes.extend(frame(OpCode::Text, b"xyz"));
    bytes.extend(frame(OpCode::Close, &close_payload(1000, "done")));
    bytes
}

#[test]
fn every_split_gives_the_same_messages() {
    let bytes = sample_stream();
    let (expected, result) = server_decode(&bytes);
    assert_eq!(result, Ok(()));
    assert_eq!(expected.len(), 5);
    for i in 0..=bytes.len() {
        for j in i..=bytes.len() {
            let mut decoder = Decoder::new(Role::Server, MAX);
            let mut got = Vec::new();
            for piece in [&bytes[..i], &bytes[i..j], &bytes[j..]] {
                let (mut some, result) = feed_whole(&mut decoder, piece);
                assert_eq!(result, Ok(()));
                got.append(&mut some);
            }
            assert_eq!(got, expected, "split at {i}, {j}");
            assert_eq!(decoder.buffered_bytes(), 0);
        }
    }
}

#[test]
fn byte_by_byte_gives_the_same_messages() {
    let bytes = sample_stream();
    let (expected, _) = server_decode(&bytes);
    let mut decoder = Decoder::new(Role::Server, MAX);
    let mut got = Vec::new();
    for byte in &bytes {
        let (mut some, result) = feed_whole(&mut decoder, std::slice::from_ref(byte));
        assert_eq!(result, Ok(()));
        got.append(&mut some);
    }
    assert_eq!(got, expected);
}

#[test]
fn header_errors() {
    assert_eq!(error_of(&[0x81, 0x00]), ProtocolError::Unmasked);
    for rsv in [0x40, 0x20, 0x10] {
        assert_eq!(
            error_of(&raw_frame(0x81 | rsv, b"")),
            ProtocolError::ReservedBits
        );
    }
    for op in [3, 7, 11, 15] {
        assert_eq!(
            error_of(&raw_frame(0x80 | op, b"")),
            ProtocolError::ReservedOpcode
        );
    }
    assert_eq!(
        error_of(&raw_frame(0x09, b"")),
        ProtocolError::FragmentedControl
    );
    assert_eq!(
        error_of(&raw_frame(0x89, &[0; 126])),
        ProtocolError::ControlTooLong
    );
    assert_eq!(
        error_of(&raw_frame(0x80, b"x")),
        ProtocolError::UnexpectedContinuation
    );
    let mut bytes = raw_frame(0x01, b"a");
    bytes.extend(raw_frame(0x81, b"b"));
    assert_eq!(error_of(&bytes), ProtocolError::ExpectedContinuation);
    let mut bytes = raw_frame(0x02, b"a");
    bytes.extend(raw_frame(0x02, b"b"));
    assert_eq!(error_of(&bytes), ProtocolError::ExpectedContinuation);
}

#[test]
fn length_encoding_errors() {
    let mut top_bit = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
    top_bit.extend(MASK);
    assert_eq!(error_of(&top_bit), ProtocolError::LengthOverflow);
    let mut short_in_16 = vec![0x82, 0xfe, 0, 5];
    short_in_16.extend(MASK);
    assert_eq!(error_of(&short_in_16), ProtocolError::NonMinimalLength);
    let mut short_in_64 = vec![0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    short_in_64.extend(MASK);
    assert_eq!(error_of(&short_in_64), ProtocolError::NonMinimalLength);
}

#[test]
fn too_big_fails_on_the_header() {
    let mut decoder = Decoder::new(Role::Server, 100);
    let (_, result) = feed_whole(&mut decoder, &raw_frame(0x82, &[0; 100]));
    assert_eq!(result, Ok(()));
    // Only the header (2 + 2 length + 4 mask bytes) of a 101-byte frame.
    let bytes = raw_frame(0x82, &[0; 101]);
    let (got, result) = feed_whole(&mut decoder, &bytes[..8]);
    assert_eq!((got, result), (vec![], Err(ProtocolError::TooBig)));
    assert_eq!(ProtocolError::TooBig.close_code(), 1009);
    // The whole message counts, not each fragment.
    let mut bytes = raw_frame(0x02, &[0; 60]);
    bytes.extend(raw_frame(0x00, &[0; 41]));
    let mut decoder = Decoder::new(Role::Server, 100);
    assert_eq!(
        feed_whole(&mut decoder, &bytes).1,
        Err(ProtocolError::TooBig)
    );
    // A huge announced length is refused without buffering it.
    let mut huge = vec![0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0];
    huge.extend(MASK);
    let mut decoder = Decoder::new(Role::Server, MAX);
    assert_eq!(
        feed_whole(&mut decoder, &huge).1,
        Err(ProtocolError::TooBig)
    );
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn invalid_utf8_single_frame() {
    assert_eq!(
        error_of(&raw_frame(0x81, b"ab\xff")),
        ProtocolError::InvalidUtf8
    );
    assert_eq!(
        error_of(&raw_frame(0x81, b"ab\xe2\x82")),
        ProtocolError::InvalidUtf8
    );
    assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
}

#[test]
fn invalid_utf8_fails_fast_on_first_bad_fragment() {
    let mut decoder = Decoder::new(Role::Server, MAX);
    assert_eq!(
        feed_whole(&mut decoder, &raw_frame(0x01, "κό".as_bytes())).1,
        Ok(())
    );
    // 0xf4 0x90 can never start valid UTF-8: fail before the message ends.
    assert_eq!(
        feed_whole(&mut decoder, &raw_frame(0x00, b"\xf4\x90\x80\x80")).1,
        Err(ProtocolError::InvalidUtf8)
    );
    // Poisoned: further input is ignored.
    assert_eq!(
        feed_whole(&mut decoder, &raw_frame(0x81, b"ok")),
        (vec![], Ok(()))
    );
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn invalid_utf8_fails_fast_within_a_partial_frame() {
    let bytes = raw_frame(0x81, b"valid then \xc0\xaf and more text");
    let mut decoder = Decoder::new(Role::Server, MAX);
    // Header + "valid then ": fine so far.
    assert_eq!(feed_whole(&mut decoder, &bytes[..6 + 11]).1, Ok(()));
    assert_eq!(
        feed_whole(&mut decoder, &bytes[6 + 11..6 + 13]).1,
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn codepoint_split_across_fragments() {
    let text = "x😀y".as_bytes();
    for split in 0..=text.len() {
        let mut bytes = raw_frame(0x01, &text[..split]);
        bytes.extend(raw_frame(0x80, &text[split..]));
        assert_eq!(
            server_decode(&bytes),
            (vec![Got::Text(text.to_vec())], Ok(())),
            "{split}"
        );
    }
    let mut bytes = raw_frame(0x01, b"\xf0\x9f");
    bytes.extend(raw_frame(0x80, b""));
    assert_eq!(error_of(&bytes), ProtocolError::InvalidUtf8);
}

#[test]
fn close_frames() {
    assert_eq!(
        server_decode(&frame(OpCode::Close, b"")),
        (vec![Got::Close(None)], Ok(()))
    );
    assert_eq!(
        server_decode(&frame(OpCode::Close, &[0x03, 0xe8])),
        (vec![Got::Close(Some((1000, String::new())))], Ok(()))
    );
    assert_eq!(
        server_decode(&frame(OpCode::Close, &close_payload(4000, "bye ☃"))),
        (vec![Got::Close(Some((4000, "bye ☃".into())))], Ok(()))
    );
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert_eq!(
            error_of(&frame(OpCode::Close, &code.to_be_bytes())),
            ProtocolError::BadCloseCode,
            "{code}"
        );
    }
    assert_eq!(
        error_of(&frame(OpCode::Close, &[3])),
        ProtocolError::BadCloseLength
    );
    assert_eq!(
        error_of(&frame(OpCode::Close, b"\x03\xe8\xff")),
        ProtocolError::InvalidUtf8
    );
    assert_eq!(ProtocolError::BadCloseCode.close_code(), 1002);
    assert_eq!(ProtocolError::BadCloseLength.close_code(), 1002);
}

#[test]
fn close_between_fragments_and_input_after_close_is_ignored() {
    let mut bytes = raw_frame(0x01, b"part");
    bytes.extend(frame(OpCode::Close, &close_payload(1001, "")));
    bytes.extend(frame(OpCode::Text, b"late"));
    let mut decoder = Decoder::new(Role::Server, MAX);
    let (got, result) = feed_whole(&mut decoder, &bytes);
    assert_eq!(
        (got, result),
        (vec![Got::Close(Some((1001, String::new())))], Ok(()))
    );
    assert_eq!(
        feed_whole(&mut decoder, &frame(OpCode::Text, b"later")),
        (vec![], Ok(()))
    );
    assert_eq!(decoder.buffered_bytes(), 0);
    assert!(decoder.is_closed());
}

#[test]
fn memory_is_released_after_delivery() {
    let mut decoder = Decoder::new(Role::Server, MAX);
    assert_eq!(decoder.buffered_bytes(), 0);
    assert!(decoder.is_idle());
    // Partial frame.
    let bytes = frame(OpCode::Binary, &[5; 1000]);
    let (got, _) = feed_whole(&mut decoder, &bytes[..500]);
    assert!(got.is_empty());
    assert!(!decoder.is_idle());
    assert!(decoder.buffered_bytes() > 0);
    let (got, _) = feed_whole(&mut decoder, &bytes[500..]);
    assert_eq!(got, vec![Got::Binary(vec![5; 1000])]);
    assert!(decoder.is_idle());
    assert_eq!(decoder.buffered_bytes(), 0);
    // Fragmented message.
    let (got, _) = feed_whole(&mut decoder, &raw_frame(0x01, b"abc"));
    assert!(got.is_empty());
    assert!(!decoder.is_idle());
    let (got, _) = feed_whole(&mut decoder, &raw_frame(0x80, b"def"));
    assert_eq!(got, vec![Got::Text(b"abcdef".to_vec())]);
    assert!(decoder.is_idle());
    assert_eq!(decoder.buffered_bytes(), 0);
    // Empty first fragment still counts as a message in progress.
    assert_eq!(
        feed_whole(&mut decoder, &raw_frame(0x02, b"")),
        (vec![], Ok(()))
    );
    assert!(!decoder.is_idle());
    assert_eq!(
        feed_whole(&mut decoder, &raw_frame(0x80, b"")).0,
        vec![Got::Binary(vec![])]
    );
    assert!(decoder.is_idle());
}

#[test]
fn unfragmented_messages_borrow_the_input() {
    let mut input = frame(OpCode::Binary, b"zero-copy");
    let range = input.as_ptr_range();
    let mut decoder = Decoder::new(Role::Server, MAX);
    let mut borrowed = false;
    decoder
        .feed(&mut input, &mut |m| {
            if let Message::Binary(b) = m {
                borrowed = range.contains(&b.as_ptr());
            }
        })
        .unwrap();
    assert!(borrowed);
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn client_role() {
    let mut decoder = Decoder::new(Role::Client, MAX);
    let mut unmasked = Vec::new();
    encode_frame(&mut unmasked, OpCode::Text, b"hi", None);
    encode_frame(&mut unmasked, OpCode::Close, &close_payload(1000, ""), None);
    assert_eq!(
        feed_whole(&mut decoder, &unmasked),
        (
            vec![
                Got::Text(b"hi".to_vec()),
                Got::Close(Some((1000, String::new())))
            ],
            Ok(())
        )
    );
    let mut decoder = Decoder::new(Role::Client, MAX);
    assert_eq!(
        feed_whole(&mut decoder, &frame(OpCode::Text, b"hi")).1,
        Err(ProtocolError::Masked)
    );
}

#[test]
fn error_codes_and_labels() {
    let all = [
        ProtocolError::Unmasked,
        ProtocolError::Masked,
        ProtocolError::ReservedBits,
        ProtocolError::ReservedOpcode,
        ProtocolError::FragmentedControl,
        ProtocolError::ControlTooLong,
        ProtocolError::UnexpectedContinuation,
        ProtocolError::ExpectedContinuation,
        ProtocolError::BadCloseLength,
        ProtocolError::BadCloseCode,
        ProtocolError::InvalidUtf8,
        ProtocolError::TooBig,
        ProtocolError::NonMinimalLength,
        ProtocolError::LengthOverflow,
    ];
    for e in all {
        let expected = match e {
            ProtocolError::InvalidUtf8 => 1007,
            ProtocolError::TooBig => 1009,
            _ => 1002,
        };
        assert_eq!(e.close_code(), expected);
        assert!(!e.label().is_empty());
    }
    let _ = CloseFrame {
        code: 1000,
        reason: "",
    };
}

#[test]
fn garbage_never_panics_and_memory_stays_bounded() {
    let mut state = 0x2545_f491_4f6c_dd1d;
    for round in 0..2000 {
        let role = if round % 2 == 0 {
            Role::Server
        } else {
            Role::Client
        };
        let mut decoder = Decoder::new(role, 4096);
        let len = (next_random(&mut state) % 300) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next_random(&mut state) as u8).collect();
        if let Some(first) = bytes.first_mut() {
            *first &= 0x8f;
        }
        let mut rest = &mut bytes[..];
        while !rest.is_empty() {
            let cut = 1 + (next_random(&mut state) as usize % rest.len());
            let (piece, tail) = rest.split_at_mut(cut);
            let _ = decoder.feed(piece, &mut |_| {});
            rest = tail;
        }
        assert!(decoder.buffered_bytes() <= 2 * 4096 + 64);
    }
}

#[test]
fn random_valid_streams_at_random_splits() {
    let mut state = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200 {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..(next_random(&mut state) % 8) {
            let len = (next_random(&mut state) % 300) as usize;
            let payload: Vec<u8> = (0..len)
                .map(|_| b'a' + (next_random(&mut state) % 26) as u8)
                .collect();
            match next_random(&mut state) % 4 {
                0 => {
                    bytes.extend(frame(OpCode::Text, &payload));
                    expected.push(Got::Text(payload));
                }
                1 => {
                    bytes.extend(frame(OpCode::Binary, &payload));
                    expected.push(Got::Binary(payload));
                }
                2 => {
                    let split = payload.len() / 3;
                    bytes.extend(raw_frame(0x01, &payload[..split]));
                    bytes.extend(raw_frame(0x89, b"p"));
                    bytes.extend(raw_frame(0x00, &payload[split..2 * split]));
                    bytes.extend(raw_frame(0x80, &payload[2 * split..]));
                    expected.push(Got::Ping(b"p".to_vec()));
                    expected.push(Got::Text(payload));
                }
                _ => {
                    let short = &payload[..payload.len().min(125)];
                    bytes.extend(frame(OpCode::Pong, short));
                    expected.push(Got::Pong(short.to_vec()));
                }
            }
        }
        let mut decoder = Decoder::new(Role::Server, MAX);
        let mut got = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let cut = 1 + (next_random(&mut state) as usize % rest.len().min(64));
            let (piece, tail) = rest.split_at(cut);
            let (mut some, result) = feed_whole(&mut decoder, piece);
            assert_eq!(result, Ok(()));
            got.append(&mut some);
            rest = tail;
        }
        assert_eq!(got, expected);
        assert!(decoder.is_idle());
        assert_eq!(decoder.buffered_bytes(), 0);
    }
}
