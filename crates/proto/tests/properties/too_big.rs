//! The message size limit: a message of exactly the limit is accepted however it is
//! fragmented; one over it always fails with TooBig, on the header of the first frame that
//! would take it over the limit, so no byte of that frame's payload is taken. The decoder
//! holds at most the limit plus one frame: the header of the frame in progress, or a whole
//! control frame (up to 131 bytes) sent between the fragments. Its buffers grow by
//! doubling, so their capacity stays within twice that.

use proptest::collection::vec;
use proptest::prelude::*;
use ringcast_proto::{Decoder, OpCode, ProtocolError, Role, header_len};

use crate::common::{Got, feed_whole};
use crate::wire::{Control, control, cut, encode, feed_split, mask_for, stream};

/// Longest control frame: 2 header bytes, 4 mask bytes and 125 payload bytes (longer
/// than the longest header, 14 bytes).
const MAX_CONTROL_FRAME: usize = 2 + 4 + 125;

/// A data message to send after some valid frames: `len` bytes cut into fragments at
/// `fragment_cuts`, fragment `i` followed by `controls[i]` if it is not the last one.
#[derive(Clone, Copy)]
struct Plan<'a> {
    role: Role,
    is_text: bool,
    len: usize,
    fragment_cuts: &'a [usize],
    controls: &'a [Control],
    limit: usize,
}

/// The bytes of a plan, the messages delivered before the limit is crossed, and where the
/// header of the fragment that crosses it ends, if one does.
struct BigMessage {
    bytes: Vec<u8>,
    expected: Vec<Got>,
    over_header_end: Option<usize>,
}

/// Appends `plan`'s frames to `bytes`, stopping after the fragment that crosses the limit.
fn big_message(mut bytes: Vec<u8>, mut expected: Vec<Got>, plan: &Plan<'_>) -> BigMessage {
    let Plan {
        role,
        is_text,
        len,
        fragment_cuts: cuts,
        controls,
        limit,
    } = *plan;
    let whole: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    let fragments = cut(&whole, cuts);
    let masked = role == Role::Server;
    let mask = |i: usize| masked.then(|| mask_for(7, i));
    let mut total = 0;
    for (i, fragment) in fragments.iter().enumerate() {
        let opcode = match (i, is_text) {
            (0, true) => OpCode::Text,
            (0, false) => OpCode::Binary,
            _ => OpCode::Continuation,
        };
        let start = bytes.len();
        let last = i + 1 == fragments.len();
        encode(&mut bytes, last, opcode, fragment, mask(i));
        total += fragment.len();
        if total > limit {
            let over_header_end = Some(start + header_len(fragment.len(), masked));
            return BigMessage {
                bytes,
                expected,
                over_header_end,
            };
        }
        if let (false, Some(control)) = (last, controls.get(i)) {
            let (opcode, payload) = control.opcode_payload();
            encode(&mut bytes, true, opcode, payload, mask(100 + i));
            expected.push(control.expected());
        }
    }
    expected.push(if is_text {
        Got::Text(whole)
    } else {
        Got::Binary(whole)
    });
    BigMessage {
        bytes,
        expected,
        over_header_end: None,
    }
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Server), Just(Role::Client)]
}

proptest! {
    #[test]
    fn a_message_of_exactly_the_limit_is_accepted(
        role in role(), limit in 0usize..3000, fragment_cuts in vec(any::<usize>(), 0..5),
        controls in vec(control(), 0..5), is_text in any::<bool>(),
        cuts in vec(any::<usize>(), 0..20),
    ) {
        let plan = Plan { role, is_text, len: limit, fragment_cuts: &fragment_cuts, controls: &controls, limit };
        let message = big_message(Vec::new(), Vec::new(), &plan);
        prop_assert_eq!(message.over_header_end, None);
        let mut decoder = Decoder::new(role, limit);
        prop_assert_eq!(
            feed_split(&mut decoder, &message.bytes, &cuts),
            (message.expected, Ok(()))
        );
        prop_assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn too_big_messages_fail_on_the_header_before_buffering_them(
        prefix in stream(3, 100), role in role(), limit in 400usize..3000,
        over in prop_oneof![1usize..4, 1usize..3000], fragment_cuts in vec(any::<usize>(), 0..5),
        controls in vec(control(), 0..5), is_text in any::<bool>(),
        cuts in vec(any::<usize>(), 0..20),
    ) {
        let mut prefix = prefix;
        prefix.close = None;
        let encoded = prefix.encode(role);
        let plan = Plan {
            role, is_text, len: limit + over, fragment_cuts: &fragment_cuts, controls: &controls, limit,
        };
        let message = big_message(encoded.bytes, encoded.expected, &plan);
        let header_end = message.over_header_end.expect("the message is over the limit");
        let mut decoder = prefix.decoder(role, limit);
        let mut got = Vec::new();
        let mut fed = 0;
        let mut error_at = None;
        for piece in cut(&message.bytes, &cuts) {
            let (mut some, result) = feed_whole(&mut decoder, &piece);
            got.append(&mut some);
            let piece_start = fed;
            fed += piece.len();
            if let Err(error) = result {
                prop_assert_eq!(error, ProtocolError::TooBig);
                error_at = Some((piece_start, fed));
                break;
            }
            prop_assert!(
                decoder.buffered_bytes() <= 2 * (limit + MAX_CONTROL_FRAME),
                "{} bytes held with limit {}", decoder.buffered_bytes(), limit
            );
        }
        // The piece that failed is the one that completed the offending header.
        let (piece_start, piece_end) = error_at.expect("TooBig was returned");
        prop_assert!(
            piece_start < header_end && header_end <= piece_end,
            "failed on bytes {}..{}, header ends at {}", piece_start, piece_end, header_end
        );
        prop_assert_eq!(got, message.expected);
        prop_assert_eq!(decoder.buffered_bytes(), 0);
    }
}
