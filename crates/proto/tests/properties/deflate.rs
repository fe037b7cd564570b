//! permessage-deflate: deflate_message then decode with the extension enabled gives the
//! message back, for every window size, in one frame or with the compressed bytes cut into
//! fragments, masked or not, and compressed payloads whose sizes cross the length-encoding
//! boundaries decode too; a message inflating to exactly the limit is accepted and one byte
//! more is TooBig, however well it compresses; RSV1 needs the extension and a first frame.

use proptest::collection::vec;
use proptest::prelude::*;
use ringcast_proto::{
    Decoder, OpCode, ProtocolError, Role, deflate_message, encode_compressed_frame,
};

use crate::common::{Got, feed_whole, random_bytes};
use crate::wire::{cut, encode, encode_rsv1};

/// `len` bytes: incompressible, repetitive text, or all zeros (a zip-bomb-like ratio).
fn payload(len: usize, kind: u8, seed: u64) -> Vec<u8> {
    match kind % 3 {
        0 => random_bytes(len, seed),
        1 => (0..len).map(|i| b"abcabd "[i % 7]).collect(),
        _ => vec![0; len],
    }
}

/// `data` as non-final stored (uncompressed) DEFLATE blocks: a valid compressed message
/// payload of exactly `data.len() + 5` bytes per 65535-byte block, built without zlib (so
/// that sizes can be picked exactly and debug builds stay fast).
fn stored_blocks(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 5 * data.len().div_ceil(0xffff));
    for block in data.chunks(0xffff) {
        let len = block.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out
}

/// Compressed sizes on both sides of the 125/126 and 65535/65536 length-encoding
/// boundaries (a stored block has 5 header bytes; at least one data byte here).
fn compressed_size() -> impl Strategy<Value = usize> {
    prop_oneof![6usize..=9, 123usize..=128, 65533usize..=65538]
}

fn decoder(masked: bool, limit: usize) -> Decoder {
    let role = if masked { Role::Server } else { Role::Client };
    let mut decoder = Decoder::new(role, limit);
    decoder.enable_deflate();
    decoder
}

/// A compressed binary message as frames: one frame if `cuts` is empty, else fragments.
fn compressed_frames(compressed: &[u8], cuts: &[usize], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut wire = Vec::new();
    if cuts.is_empty() {
        encode_compressed_frame(&mut wire, OpCode::Binary, compressed, mask);
        return wire;
    }
    let fragments = cut(compressed, cuts);
    let last = fragments.len() - 1;
    for (i, fragment) in fragments.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        encode_rsv1(&mut wire, i == last, i == 0, opcode, fragment, mask);
    }
    wire
}

proptest! {
    #[test]
    fn compressed_messages_round_trip(
        len in 0usize..=2000, kind in any::<u8>(), seed in any::<u64>(), window_bits in 8u8..=15,
        cuts in vec(any::<usize>(), 0..4), masked in any::<bool>(), mask in any::<[u8; 4]>(),
    ) {
        let original = payload(len, kind, seed);
        let compressed = deflate_message(&original, window_bits);
        let wire = compressed_frames(&compressed, &cuts, masked.then_some(mask));
        let mut decoder = decoder(masked, 1 << 17);
        prop_assert_eq!(feed_whole(&mut decoder, &wire), (vec![Got::Binary(original)], Ok(())));
        prop_assert!(decoder.is_idle());
        prop_assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn compressed_payloads_across_length_boundaries_round_trip(
        size in compressed_size(), seed in any::<u64>(), cuts in vec(any::<usize>(), 0..3),
        masked in any::<bool>(), mask in any::<[u8; 4]>(),
    ) {
        let original = payload(size - 5, 0, seed);
        let compressed = stored_blocks(&original);
        prop_assert_eq!(compressed.len(), size);
        let wire = compressed_frames(&compressed, &cuts, masked.then_some(mask));
        let mut decoder = decoder(masked, 1 << 17);
        prop_assert_eq!(feed_whole(&mut decoder, &wire), (vec![Got::Binary(original)], Ok(())));
        prop_assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn compressed_text_round_trips_and_bad_utf8_is_refused(
        text in "\\PC{0,200}", corrupt in any::<bool>(), window_bits in 8u8..=15,
        masked in any::<bool>(), mask in any::<[u8; 4]>(),
    ) {
        let mut original = text.into_bytes();
        if corrupt {
            original.push(0xff);
        }
        let compressed = deflate_message(&original, window_bits);
        let mut wire = Vec::new();
        encode_compressed_frame(&mut wire, OpCode::Text, &compressed, masked.then_some(mask));
        let expected = if corrupt {
            (vec![], Err(ProtocolError::InvalidUtf8))
        } else {
            (vec![Got::Text(original)], Ok(()))
        };
        prop_assert_eq!(feed_whole(&mut decoder(masked, 1 << 20), &wire), expected);
    }

    #[test]
    fn inflated_size_is_limited_exactly(
        limit in prop_oneof![3 => 0usize..300, 1 => 65530usize..65540], over in 0usize..3,
        under in any::<bool>(), kind in any::<u8>(), seed in any::<u64>(),
        cuts in vec(any::<usize>(), 0..3), masked in any::<bool>(), mask in any::<[u8; 4]>(),
    ) {
        let len = if under { limit.saturating_sub(over) } else { limit + over };
        let original = payload(len, kind, seed);
        // Incompressible data as stored blocks, the rest really compressed.
        let compressed = if kind % 3 == 0 {
            stored_blocks(&original)
        } else {
            deflate_message(&original, 15)
        };
        let wire = compressed_frames(&compressed, &cuts, masked.then_some(mask));
        let (got, result) = feed_whole(&mut decoder(masked, limit), &wire);
        if len <= limit {
            prop_assert_eq!((got, result), (vec![Got::Binary(original)], Ok(())));
        } else {
            prop_assert_eq!((got, result), (vec![], Err(ProtocolError::TooBig)));
        }
    }

    #[test]
    fn compressed_frames_need_the_extension(
        len in 0usize..200, kind in any::<u8>(), seed in any::<u64>(), masked in any::<bool>(),
    ) {
        let compressed = deflate_message(&payload(len, kind, seed), 15);
        let mut wire = Vec::new();
        encode_compressed_frame(&mut wire, OpCode::Binary, &compressed, masked.then_some([1, 2, 3, 4]));
        let role = if masked { Role::Server } else { Role::Client };
        let mut plain = Decoder::new(role, 1 << 20);
        prop_assert!(!plain.deflate_enabled());
        prop_assert_eq!(feed_whole(&mut plain, &wire), (vec![], Err(ProtocolError::ReservedBits)));
        // RSV1 on a continuation frame is refused even with the extension.
        let mut wire = Vec::new();
        encode(&mut wire, false, OpCode::Binary, &compressed, masked.then_some([1, 2, 3, 4]));
        encode_rsv1(&mut wire, true, true, OpCode::Continuation, b"", masked.then_some([5, 6, 7, 8]));
        prop_assert_eq!(
            feed_whole(&mut decoder(masked, 1 << 20), &wire),
            (vec![], Err(ProtocolError::ReservedBits))
        );
    }
}
