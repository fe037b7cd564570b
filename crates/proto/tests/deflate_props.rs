//! Property tests of the permessage-deflate path: any payload round-trips through
//! deflate/inflate at every window, through compressed frames fed to a deflate-enabled
//! decoder split anywhere, and inflation never exceeds its limit.

use proptest::prelude::*;
use ringcast_proto::{
    Decoder, Message, OpCode, ProtocolError, Role, deflate_message, encode_compressed_frame,
    inflate_message,
};

fn decode_all(bytes: &[u8], split: usize, max: usize) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut decoder = Decoder::new(Role::Server, max);
    decoder.enable_deflate();
    let mut out = Vec::new();
    let split = split.min(bytes.len());
    for part in [&bytes[..split], &bytes[split..]] {
        let mut part = part.to_vec();
        decoder.feed(&mut part, &mut |m| {
            if let Message::Binary(p) | Message::Text(p) = m {
                out.push(p.to_vec());
            }
        })?;
    }
    Ok(out)
}

proptest! {
    #[test]
    fn deflate_then_inflate_is_identity(
        payload in prop::collection::vec(any::<u8>(), 0..20_000),
        bits in 8u8..=15,
    ) {
        let compressed = deflate_message(&payload, bits);
        prop_assert_eq!(inflate_message(&compressed, payload.len() + 1).unwrap(), payload);
    }

    #[test]
    fn compressed_frames_decode_split_anywhere(
        messages in prop::collection::vec(prop::collection::vec(0u8..4, 0..3000), 1..5),
        split in any::<usize>(),
    ) {
        let mut wire = Vec::new();
        for m in &messages {
            let compressed = deflate_message(m, 15);
            encode_compressed_frame(&mut wire, OpCode::Binary, &compressed, Some([9, 8, 7, 6]));
        }
        let got = decode_all(&wire, split % (wire.len() + 1), 1 << 20).unwrap();
        prop_assert_eq!(got, messages);
    }

    #[test]
    fn inflation_stops_at_the_limit(len in 1usize..200_000, limit in 1usize..50_000) {
        let compressed = deflate_message(&vec![b'a'; len], 15);
        match inflate_message(&compressed, limit) {
            Ok(out) => prop_assert!(out.len() <= limit && out.len() == len),
            Err(e) => {
                prop_assert_eq!(e, ProtocolError::TooBig);
                prop_assert!(len > limit);
            }
        }
    }
}
