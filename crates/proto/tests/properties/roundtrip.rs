//! decode(encode(frame)) gives the frame back, for every opcode, for payload sizes on both
//! sides of the 125/126 and 65535/65536 length-encoding boundaries, masked (client to
//! server) and unmasked (server to client); a frame in the wrong direction or a control
//! frame over 125 bytes is refused.

use proptest::prelude::*;
use ringcast_proto::{Decoder, OpCode, ProtocolError, Role, close_payload};

use crate::common::{Got, feed_whole};
use crate::wire::encode;

/// Large enough for the biggest payload generated here.
const LIMIT: usize = 1 << 18;

/// Payload sizes around each boundary of the length encoding, plus small ones.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..=3,
        123usize..=128,
        65533usize..=65538,
        0usize..=1000,
    ]
}

/// Deterministic bytes of `len`, different for each seed (cheap for 64 KiB payloads).
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Valid UTF-8 of exactly `len` bytes mixing 1-, 2-, 3- and 4-byte characters.
fn text(len: usize, seed: u8) -> Vec<u8> {
    let mut out = String::with_capacity(len);
    let chars = ['a', 'é', '€', '😀'];
    let mut i = usize::from(seed);
    while out.len() < len {
        let c = chars[i % chars.len()];
        if out.len() + c.len_utf8() <= len {
            out.push(c);
        } else {
            out.push('z');
        }
        i += 1;
    }
    out.into_bytes()
}

fn role_and_mask(masked: bool, mask: [u8; 4]) -> (Role, Option<[u8; 4]>) {
    if masked {
        (Role::Server, Some(mask))
    } else {
        (Role::Client, None)
    }
}

fn decode(role: Role, bytes: &[u8]) -> (Vec<Got>, Result<(), ProtocolError>) {
    let mut decoder = Decoder::new(role, LIMIT);
    let outcome = feed_whole(&mut decoder, bytes);
    if outcome.1.is_ok() {
        assert!(decoder.is_idle());
        assert_eq!(decoder.buffered_bytes(), 0);
    }
    outcome
}

proptest! {
    #[test]
    fn data_frames_round_trip(
        len in size(), seed in any::<u8>(), is_text in any::<bool>(),
        masked in any::<bool>(), mask in any::<[u8; 4]>(),
    ) {
        let (role, mask) = role_and_mask(masked, mask);
        let (opcode, payload) = if is_text {
            (OpCode::Text, text(len, seed))
        } else {
            (OpCode::Binary, bytes(len, seed))
        };
        let mut wire = Vec::new();
        encode(&mut wire, true, opcode, &payload, mask);
        let expected = if is_text { Got::Text(payload) } else { Got::Binary(payload) };
        prop_assert_eq!(decode(role, &wire), (vec![expected], Ok(())));
    }

    #[test]
    fn continuation_frames_round_trip(
        first in size(), second in size(), seed in any::<u8>(), is_text in any::<bool>(),
        masked in any::<bool>(), mask in any::<[u8; 4]>(),
    ) {
        let (role, mask) = role_and_mask(masked, mask);
        let whole = if is_text { text(first + second, seed) } else { bytes(first + second, seed) };
        let opcode = if is_text { OpCode::Text } else { OpCode::Binary };
        let mut wire = Vec::new();
        encode(&mut wire, false, opcode, &whole[..first], mask);
        encode(&mut wire, true, OpCode::Continuation, &whole[first..], mask);
        let expected = if is_text { Got::Text(whole) } else { Got::Binary(whole) };
        prop_assert_eq!(decode(role, &wire), (vec![expected], Ok(())));
    }

    #[test]
    fn control_frames_round_trip_up_to_125_bytes(
        len in size(), seed in any::<u8>(), ping in any::<bool>(),
        masked in any::<bool>(), mask in any::<[u8; 4]>(),
    ) {
        let (role, mask) = role_and_mask(masked, mask);
        let payload = bytes(len, seed);
        let opcode = if ping { OpCode::Ping } else { OpCode::Pong };
        let mut wire = Vec::new();
        encode(&mut wire, true, opcode, &payload, mask);
        let expected = if len > 125 {
            (vec![], Err(ProtocolError::ControlTooLong))
        } else if ping {
            (vec![Got::Ping(payload)], Ok(()))
        } else {
            (vec![Got::Pong(payload)], Ok(()))
        };
        prop_assert_eq!(decode(role, &wire), expected);
    }

    #[test]
    fn close_frames_round_trip(
        code in prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999],
        reason_len in 0usize..=123, seed in any::<u8>(), empty in any::<bool>(),
        masked in any::<bool>(), mask in any::<[u8; 4]>(),
    ) {
        let (role, mask) = role_and_mask(masked, mask);
        let reason = String::from_utf8(text(reason_len, seed)).unwrap();
        let (payload, expected) = if empty {
            (Vec::new(), Got::Close(None))
        } else {
            (close_payload(code, &reason), Got::Close(Some((code, reason))))
        };
        let mut wire = Vec::new();
        encode(&mut wire, true, OpCode::Close, &payload, mask);
        let mut decoder = Decoder::new(role, LIMIT);
        prop_assert_eq!(feed_whole(&mut decoder, &wire), (vec![expected], Ok(())));
        prop_assert!(decoder.is_closed());
        prop_assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn frames_in_the_wrong_direction_are_refused(
        len in size(), seed in any::<u8>(), opcode in prop_oneof![
            Just(OpCode::Text), Just(OpCode::Binary), Just(OpCode::Ping),
            Just(OpCode::Pong), Just(OpCode::Close),
        ],
        masked in any::<bool>(), mask in any::<[u8; 4]>(),
    ) {
        let (role, mask) = role_and_mask(masked, mask);
        let wrong_role = if role == Role::Server { Role::Client } else { Role::Server };
        let expected = if wrong_role == Role::Server {
            ProtocolError::Unmasked
        } else {
            ProtocolError::Masked
        };
        let payload = text(len.min(125), seed);
        let mut wire = Vec::new();
        encode(&mut wire, true, opcode, &payload, mask);
        prop_assert_eq!(decode(wrong_role, &wire), (vec![], Err(expected)));
    }
}
