//! A model of WebSocket byte streams for the properties: data messages (possibly
//! fragmented, with control frames between the fragments, possibly compressed with
//! permessage-deflate), control frames and a final close, their encoding in either
//! direction, the messages a decoder must deliver for them, and helpers that feed bytes to
//! a decoder whole or in pieces.

use crate::common::{Got, Outcome, feed_whole};
use proptest::collection::vec;
use proptest::prelude::*;
use ringcast_proto::RSV1;
use ringcast_proto::{Decoder, OpCode, Role, close_payload, deflate_message, encode_frame};

/// The masking key of frame number `index` of a stream (a fixed mixing of both numbers,
/// so that every frame of a stream has its own key).
pub fn mask_for(seed: u32, index: usize) -> [u8; 4] {
    let mixed = (u64::from(seed) << 32 | index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let bytes = (mixed >> 32) as u32;
    bytes.to_be_bytes()
}

/// One frame with an explicit FIN bit, masked when sent by a client.
pub fn encode(out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) {
    encode_rsv1(out, fin, false, opcode, payload, mask);
}

/// One frame with explicit FIN and RSV1 (compressed) bits.
pub fn encode_rsv1(
    out: &mut Vec<u8>,
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let start = out.len();
    encode_frame(out, opcode, payload, mask);
    if !fin {
        out[start] &= 0x7f;
    }
    if rsv1 {
        out[start] |= RSV1;
    }
}

/// A ping or a pong.
#[derive(Debug, Clone)]
pub enum Control {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

impl Control {
    /// The frame's opcode and payload.
    pub fn opcode_payload(&self) -> (OpCode, &[u8]) {
        match self {
            Self::Ping(p) => (OpCode::Ping, p),
            Self::Pong(p) => (OpCode::Pong, p),
        }
    }

    /// The message a decoder delivers for it.
    pub fn expected(&self) -> Got {
        match self {
            Self::Ping(p) => Got::Ping(p.clone()),
            Self::Pong(p) => Got::Pong(p.clone()),
        }
    }
}

/// A text or binary message, compressed or not, sent as one or more fragments cut at
/// `cuts` (of the bytes on the wire, so inside the compressed data when compressed);
/// `controls[i]` are sent right after fragment `i` unless it is the last one.
#[derive(Debug, Clone)]
pub struct DataMessage {
    pub text: bool,
    pub payload: Vec<u8>,
    pub compressed: bool,
    pub cuts: Vec<usize>,
    pub controls: Vec<Vec<Control>>,
}

/// A top-level item of a stream.
#[derive(Debug, Clone)]
pub enum Item {
    Control(Control),
    Data(DataMessage),
}

/// A valid stream: items, then optionally a close frame (code, reason). With `deflate`
/// (permessage-deflate negotiated), messages marked compressed are sent compressed with a
/// window of 2^`window_bits` bytes.
#[derive(Debug, Clone)]
pub struct Stream {
    pub items: Vec<Item>,
    pub close: Option<(u16, String)>,
    pub mask_seed: u32,
    pub deflate: bool,
    pub window_bits: u8,
}

/// A stream's bytes and what a decoder must make of them.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// Every message in delivery order.
    pub expected: Vec<Got>,
    /// Offsets where a top-level item ends: the decoder must hold nothing there.
    pub idle_points: Vec<usize>,
}

/// Encoding of frames in one direction: masked (client to server) or not.
struct Writer {
    bytes: Vec<u8>,
    masked: bool,
    seed: u32,
    frames: usize,
}

impl Writer {
    fn frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        self.frame_rsv1(fin, false, opcode, payload);
    }

    fn frame_rsv1(&mut self, fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]) {
        let mask = self.masked.then(|| mask_for(self.seed, self.frames));
        self.frames += 1;
        encode_rsv1(&mut self.bytes, fin, rsv1, opcode, payload, mask);
    }
}

impl Stream {
    /// A decoder for this stream: permessage-deflate enabled if the stream uses it.
    pub fn decoder(&self, role: Role, limit: usize) -> Decoder {
        let mut decoder = Decoder::new(role, limit);
        if self.deflate {
            decoder.enable_deflate();
        }
        decoder
    }

    /// The bytes as sent to a decoder of `role` (masked for a server), and the messages
    /// it must deliver.
    pub fn encode(&self, role: Role) -> Encoded {
        let mut writer = Writer {
            bytes: Vec::new(),
            masked: role == Role::Server,
            seed: self.mask_seed,
            frames: 0,
        };
        let mut expected = Vec::new();
        let mut idle_points = Vec::new();
        for item in &self.items {
            match item {
                Item::Control(control) => {
                    let (opcode, payload) = control.opcode_payload();
                    writer.frame(true, opcode, payload);
                    expected.push(control.expected());
                }
                Item::Data(message) => {
                    let compressed = self.deflate && message.compressed;
                    let wire = if compressed {
                        deflate_message(&message.payload, self.window_bits)
                    } else {
                        message.payload.clone()
                    };
                    let fragments = cut(&wire, &message.cuts);
                    let last = fragments.len() - 1;
                    for (i, fragment) in fragments.iter().enumerate() {
                        let opcode = match (i, message.text) {
                            (0, true) => OpCode::Text,
                            (0, false) => OpCode::Binary,
                            _ => OpCode::Continuation,
                        };
                        writer.frame_rsv1(i == last, compressed && i == 0, opcode, fragment);
                        if i == last {
                            break;
                        }
                        for control in message.controls.get(i).into_iter().flatten() {
                            let (opcode, payload) = control.opcode_payload();
                            writer.frame(true, opcode, payload);
                            expected.push(control.expected());
                        }
                    }
                    expected.push(if message.text {
                        Got::Text(message.payload.clone())
                    } else {
                        Got::Binary(message.payload.clone())
                    });
                }
            }
            idle_points.push(writer.bytes.len());
        }
        if let Some((code, reason)) = &self.close {
            writer.frame(true, OpCode::Close, &close_payload(*code, reason));
            expected.push(Got::Close(Some((*code, reason.clone()))));
            idle_points.push(writer.bytes.len());
        }
        Encoded {
            bytes: writer.bytes,
            expected,
            idle_points,
        }
    }
}

/// Cuts `payload` at the byte offsets `cuts` (taken modulo its length + 1, any order).
pub fn cut(payload: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut offsets: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
    offsets.sort_unstable();
    let mut pieces = Vec::with_capacity(offsets.len() + 1);
    let mut start = 0;
    for end in offsets {
        pieces.push(payload[start..end].to_vec());
        start = end;
    }
    pieces.push(payload[start..].to_vec());
    pieces
}

/// A control frame with a payload of 0..=125 bytes.
pub fn control() -> impl Strategy<Value = Control> {
    (any::<bool>(), vec(any::<u8>(), 0..=125)).prop_map(|(ping, payload)| {
        if ping {
            Control::Ping(payload)
        } else {
            Control::Pong(payload)
        }
    })
}

/// A data message of up to `max_len` bytes: text (any Unicode, fragments cut anywhere,
/// even inside a code point) or binary, compressed or not, in 1 to 5 fragments with control
/// frames between.
pub fn data_message(max_len: usize) -> impl Strategy<Value = DataMessage> {
    let payload = prop_oneof![
        "\\PC{0,80}".prop_map(|s: String| (true, s.into_bytes())),
        vec(any::<u8>(), 0..=max_len).prop_map(|b| (false, b)),
        // Repetitive, so that it compresses to much less than its size.
        ("[a-c]{1,4}", 0..=max_len).prop_map(|(unit, n)| (true, unit.repeat(n).into_bytes())),
    ];
    (
        payload,
        any::<bool>(),
        vec(any::<usize>(), 0..5),
        vec(vec(control(), 0..3), 0..5),
    )
        .prop_map(
            |((text, payload), compressed, cuts, controls)| DataMessage {
                text,
                payload,
                compressed,
                cuts,
                controls,
            },
        )
}

/// A valid close payload: an allowed code and a reason of at most 123 bytes.
pub fn close() -> impl Strategy<Value = (u16, String)> {
    let code = prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999];
    (code, "\\PC{0,30}").prop_map(|(code, reason)| {
        let payload = close_payload(code, &reason);
        let reason = String::from_utf8(payload[2..].to_vec()).unwrap_or_default();
        (code, reason)
    })
}

/// A valid stream of up to `max_items` items, maybe ending with a close frame, maybe with
/// permessage-deflate (window 2^8 to 2^15).
pub fn stream(max_items: usize, max_data_len: usize) -> impl Strategy<Value = Stream> {
    let item = prop_oneof![
        control().prop_map(Item::Control),
        data_message(max_data_len).prop_map(Item::Data),
    ];
    (
        vec(item, 0..=max_items),
        proptest::option::of(close()),
        any::<u32>(),
        any::<bool>(),
        8u8..=15,
    )
        .prop_map(|(items, close, mask_seed, deflate, window_bits)| Stream {
            items,
            close,
            mask_seed,
            deflate,
            window_bits,
        })
}

/// Feeds `bytes` to `decoder` cut at `cuts` (offsets modulo the length + 1), one call per
/// piece; the result is the first error, as a caller that stops at the first error sees.
pub fn feed_split(decoder: &mut Decoder, bytes: &[u8], cuts: &[usize]) -> Outcome {
    let mut got = Vec::new();
    for piece in cut(bytes, cuts) {
        let (mut some, result) = feed_whole(decoder, &piece);
        got.append(&mut some);
        if result.is_err() {
            return (got, result);
        }
    }
    (got, Ok(()))
}
