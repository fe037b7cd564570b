//! Splitting a stream at any points changes nothing: a valid stream (several frames,
//! fragmented messages with control frames between the fragments, compressed messages, a
//! close) gives the same messages in pieces as whole, and a corrupted one also gives the
//! same first error; the decoder holds no memory at the end of every complete top-level
//! message.

use proptest::collection::vec;
use proptest::prelude::*;
use ringcast_proto::Role;

use crate::common::{Got, feed_whole};
use crate::wire::{cut, feed_split, stream};

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Server), Just(Role::Client)]
}

/// A change to a valid stream: overwrite a byte, flip a bit, or cut the stream short.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    FlipBit(usize, u8),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, v)| Mutation::Set(at, v)),
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for mutation in mutations {
        if bytes.is_empty() {
            return;
        }
        let len = bytes.len();
        match *mutation {
            Mutation::Set(at, value) => bytes[at % len] = value,
            Mutation::FlipBit(at, bit) => bytes[at % len] ^= 1 << bit,
            Mutation::Truncate(at) => bytes.truncate(at % len),
        }
    }
}

proptest! {
    #[test]
    fn valid_streams_give_the_same_messages_at_any_split(
        stream in stream(6, 300), role in role(), cuts in vec(any::<usize>(), 0..12),
    ) {
        let encoded = stream.encode(role);
        let mut whole = stream.decoder(role, 1 << 20);
        prop_assert_eq!(feed_whole(&mut whole, &encoded.bytes), (encoded.expected.clone(), Ok(())));
        let mut split = stream.decoder(role, 1 << 20);
        prop_assert_eq!(feed_split(&mut split, &encoded.bytes, &cuts), (encoded.expected, Ok(())));
        prop_assert!(split.is_idle());
        prop_assert_eq!(split.buffered_bytes(), 0);
        prop_assert_eq!(split.is_closed(), stream.close.is_some());
    }

    #[test]
    fn valid_streams_byte_by_byte(stream in stream(3, 200), role in role()) {
        let encoded = stream.encode(role);
        let every_offset: Vec<usize> = (1..encoded.bytes.len()).collect();
        let mut decoder = stream.decoder(role, 1 << 20);
        prop_assert_eq!(
            feed_split(&mut decoder, &encoded.bytes, &every_offset),
            (encoded.expected, Ok(()))
        );
    }

    #[test]
    fn corrupted_streams_give_the_same_messages_and_error_at_any_split(
        stream in stream(5, 300), role in role(), mutations in vec(mutation(), 1..4),
        cuts in vec(any::<usize>(), 0..12), limit in prop_oneof![Just(64usize), Just(300), Just(1 << 20)],
    ) {
        let mut bytes = stream.encode(role).bytes;
        mutate(&mut bytes, &mutations);
        let whole = feed_whole(&mut stream.decoder(role, limit), &bytes);
        let split = feed_split(&mut stream.decoder(role, limit), &bytes, &cuts);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn nothing_is_held_after_each_complete_message(
        stream in stream(6, 300), role in role(), cuts in vec(any::<usize>(), 0..12),
    ) {
        let encoded = stream.encode(role);
        let len = encoded.bytes.len();
        // Cut at every item end, plus at random offsets in between.
        let mut offsets = encoded.idle_points.clone();
        offsets.extend(cuts.iter().map(|c| c % (len + 1)));
        offsets.sort_unstable();
        offsets.dedup();
        let mut decoder = stream.decoder(role, 1 << 20);
        let mut got: Vec<Got> = Vec::new();
        let mut fed = 0;
        for piece in cut(&encoded.bytes, &offsets) {
            let (mut some, result) = feed_whole(&mut decoder, &piece);
            prop_assert_eq!(result, Ok(()));
            got.append(&mut some);
            fed += piece.len();
            if encoded.idle_points.contains(&fed) {
                prop_assert!(decoder.is_idle(), "not idle at {}", fed);
                prop_assert_eq!(decoder.buffered_bytes(), 0, "memory held at {}", fed);
            }
        }
        prop_assert_eq!(got, encoded.expected);
    }
}
