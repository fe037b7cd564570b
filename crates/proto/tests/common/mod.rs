//! Helpers the proto test files share: a fixed masking key and message limit, the RFC 7692
//! "Hello" sample, an owned copy of the messages a decoder delivers, feeding a decoder in
//! one call, masked frames with an explicit first header byte, and deterministic
//! pseudo-random bytes.
//!
//! Every test file is a crate of its own and uses only some of these, hence the
//! `dead_code` allowance.

#![allow(dead_code)]

use std::fmt;

use ringcast_proto::{Decoder, Message, OpCode, ProtocolError, encode_frame};

/// The masking key of client frames built by the tests.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The message size limit of decoders built by the tests.
pub const MAX: usize = 1 << 20;

/// RFC 7692 7.2.3.1: "Hello" compressed with one fixed-Huffman block.
pub const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

/// Owned copy of a delivered message, comparable across decoders and feeds.
#[derive(Clone, PartialEq, Eq)]
pub enum Got {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

impl Got {
    /// Owned copy of `message`.
    pub fn of(message: Message<'_>) -> Self {
        match message {
            Message::Text(b) => Self::Text(b.to_vec()),
            Message::Binary(b) => Self::Binary(b.to_vec()),
            Message::Ping(b) => Self::Ping(b.to_vec()),
            Message::Pong(b) => Self::Pong(b.to_vec()),
            Message::Close(c) => Self::Close(c.map(|c| (c.code, c.reason.to_owned()))),
        }
    }
}

/// Payloads up to this length are shown whole in failures.
const SHOWN_WHOLE: usize = 64;

/// Shows short payloads whole, and only the kind, the length and the first bytes of longer
/// ones, so that failures with 64 KiB payloads stay readable.
impl fmt::Debug for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, bytes) = match self {
            Self::Text(b) => ("Text", b),
            Self::Binary(b) => ("Binary", b),
            Self::Ping(b) => ("Ping", b),
            Self::Pong(b) => ("Pong", b),
            Self::Close(close) => return write!(f, "Close({close:?})"),
        };
        if bytes.len() <= SHOWN_WHOLE {
            return write!(f, "{kind}({bytes:02x?})");
        }
        let shown = &bytes[..16];
        write!(f, "{kind}(len {}, starts {shown:02x?})", bytes.len())
    }
}

/// What a decoder made of some input: messages in order and the first error.
pub type Outcome = (Vec<Got>, Result<(), ProtocolError>);

/// Feeds `bytes` to `decoder` in one call.
pub fn feed_whole(decoder: &mut Decoder, bytes: &[u8]) -> Outcome {
    let mut input = bytes.to_vec();
    let mut got = Vec::new();
    let result = decoder.feed(&mut input, &mut |m| got.push(Got::of(m)));
    (got, result)
}

/// A masked (client-to-server) frame with an explicit first header byte (FIN, RSV,
/// opcode).
pub fn raw_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, OpCode::Binary, payload, Some(MASK));
    out[0] = first_byte;
    out
}

/// Deterministic xorshift64 for reproducible pseudo-random tests.
pub fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len).map(|_| next_random(&mut state) as u8).collect()
}
