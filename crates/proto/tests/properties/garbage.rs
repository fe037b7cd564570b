//! Arbitrary bytes never panic the decoder, in either role, with or without
//! permessage-deflate, whatever the message limit and however the bytes are split, and give
//! the same messages and error split as whole.

use proptest::collection::vec;
use proptest::prelude::*;
use ringcast_proto::{Decoder, Role};

use crate::common::feed_whole;
use crate::wire::feed_split;

/// Arbitrary bytes, or bytes whose frame headers often pass the first checks (no RSV2 or
/// RSV3, a known opcode, a short length) so that the later checks (and, with RSV1, the
/// inflater) are reached too.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let frame_like = vec(
        (
            prop_oneof![Just(0u8), Just(1), Just(2), Just(8), Just(9), Just(10)],
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            vec(any::<u8>(), 0..40),
        )
            .prop_map(|(opcode, fin, rsv1, masked, mut rest)| {
                let len = rest.len().saturating_sub(if masked { 4 } else { 0 }) as u8;
                let first = opcode | if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 };
                let mut frame = vec![first, len | if masked { 0x80 } else { 0 }];
                frame.append(&mut rest);
                frame
            }),
        0..20,
    )
    .prop_map(|frames| frames.concat());
    prop_oneof![vec(any::<u8>(), 0..2048), frame_like]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_either_decoder(
        bytes in garbage(), cuts in vec(any::<usize>(), 0..8),
        limit in prop_oneof![0usize..200, Just(1 << 20)], deflate in any::<bool>(),
    ) {
        let decoder = |role| {
            let mut decoder = Decoder::new(role, limit);
            if deflate {
                decoder.enable_deflate();
            }
            decoder
        };
        for role in [Role::Server, Role::Client] {
            let whole = feed_whole(&mut decoder(role), &bytes);
            let split = feed_split(&mut decoder(role), &bytes, &cuts);
            prop_assert_eq!(whole, split);
        }
    }
}
