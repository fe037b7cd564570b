//! Checks compressed messages with an independent DEFLATE decoder (RFC 1951, written
//! here after zlib's `puff`): the output decodes to the original message and no match
//! reaches further back than the negotiated window, including window bits 8 (256 bytes),
//! which zlib serves by compressing with 9.

mod common;

use common::{HELLO, random_bytes};
use ringcast_proto::deflate_message;

/// Appended to a message before decoding (RFC 7692 7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DISTANCE_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DISTANCE_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// Order of the code length code lengths in a dynamic block header.
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Reads bits least significant first.
struct Bits<'a> {
    data: &'a [u8],
    position: usize,
}

impl Bits<'_> {
    fn read(&mut self, count: u32) -> u32 {
        let mut value = 0;
        for i in 0..count {
            let byte = self.data[self.position / 8];
            value |= u32::from((byte >> (self.position % 8)) & 1) << i;
            self.position += 1;
        }
        value
    }

    fn remaining(&self) -> usize {
        self.data.len() * 8 - self.position
    }
}

/// A canonical Huffman code: how many codes of each length, and the symbols in order.
struct Huffman {
    counts: [u16; 16],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Self {
        let mut counts = [0u16; 16];
        for &len in lengths {
            counts[usize::from(len)] += 1;
        }
        counts[0] = 0;
        let mut symbols = Vec::new();
        for len in 1..16 {
            for (symbol, &l) in lengths.iter().enumerate() {
                if usize::from(l) == len {
                    symbols.push(symbol as u16);
                }
            }
        }
        Self { counts, symbols }
    }

    fn decode(&self, bits: &mut Bits<'_>) -> u16 {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= bits.read(1) as i32;
            let count = i32::from(self.counts[len]);
            if code - first < count {
                return self.symbols[(index + code - first) as usize];
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        panic!("invalid Huffman code");
    }
}

/// The fixed literal/length and distance codes (RFC 1951 3.2.6).
fn fixed_codes() -> (Huffman, Huffman) {
    let mut lengths = [8u8; 288];
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    (Huffman::new(&lengths), Huffman::new(&[5; 30]))
}

/// Reads the code descriptions of a dynamic block (RFC 1951 3.2.7).
fn dynamic_codes(bits: &mut Bits<'_>) -> (Huffman, Huffman) {
    let literal_count = bits.read(5) as usize + 257;
    let distance_count = bits.read(5) as usize + 1;
    let code_length_count = bits.read(4) as usize + 4;
    let mut code_lengths = [0u8; 19];
    for &at in &CODE_LENGTH_ORDER[..code_length_count] {
        code_lengths[at] = bits.read(3) as u8;
    }
    let code_length_code = Huffman::new(&code_lengths);
    let mut lengths = Vec::with_capacity(literal_count + distance_count);
    while lengths.len() < literal_count + distance_count {
        match code_length_code.decode(bits) {
            symbol @ 0..=15 => lengths.push(symbol as u8),
            16 => {
                let previous = *lengths.last().expect("repeat with no previous length");
                let repeat = 3 + bits.read(2) as usize;
                lengths.extend(std::iter::repeat_n(previous, repeat));
            }
            17 => lengths.extend(std::iter::repeat_n(0, 3 + bits.read(3) as usize)),
            _ => lengths.extend(std::iter::repeat_n(0, 11 + bits.read(7) as usize)),
        }
    }
    (
        Huffman::new(&lengths[..literal_count]),
        Huffman::new(&lengths[literal_count..]),
    )
}

/// Decodes one compressed message; returns the output and the largest match distance.
fn inflate_with_max_distance(compressed: &[u8]) -> (Vec<u8>, usize) {
    let data: Vec<u8> = compressed.iter().chain(&SYNC_TAIL).copied().collect();
    let mut bits = Bits {
        data: &data,
        position: 0,
    };
    let (mut out, mut max_distance) = (Vec::new(), 0);
    while bits.remaining() >= 8 {
        let last = bits.read(1) == 1;
        match bits.read(2) {
            0 => {
                bits.position = bits.position.div_ceil(8) * 8;
                let len = bits.read(16);
                assert_eq!(bits.read(16), !len & 0xffff, "stored length check");
                for _ in 0..len {
                    out.push(bits.read(8) as u8);
                }
            }
            kind @ (1 | 2) => {
                let (literals, distances) = if kind == 1 {
                    fixed_codes()
                } else {
                    dynamic_codes(&mut bits)
                };
                loop {
                    let symbol = usize::from(literals.decode(&mut bits));
                    if symbol < 256 {
                        out.push(symbol as u8);
                        continue;
                    }
                    if symbol == 256 {
                        break;
                    }
                    let at = symbol - 257;
                    let len = usize::from(LENGTH_BASE[at])
                        + bits.read(u32::from(LENGTH_EXTRA[at])) as usize;
                    let at = usize::from(distances.decode(&mut bits));
                    let distance = usize::from(DISTANCE_BASE[at])
                        + bits.read(u32::from(DISTANCE_EXTRA[at])) as usize;
                    assert!(distance <= out.len(), "distance before the message start");
                    max_distance = max_distance.max(distance);
                    for _ in 0..len {
                        out.push(out[out.len() - distance]);
                    }
                }
            }
            _ => panic!("reserved block type"),
        }
        if last {
            break;
        }
    }
    (out, max_distance)
}

/// Random blocks of `period` bytes repeated up to `len`: matches want distance `period`.
fn periodic(period: usize, len: usize) -> Vec<u8> {
    random_bytes(period, period as u64)
        .into_iter()
        .cycle()
        .take(len)
        .collect()
}

#[test]
fn rfc_hello_decodes_independently() {
    let (out, max_distance) = inflate_with_max_distance(&HELLO);
    assert_eq!((out.as_slice(), max_distance), (&b"Hello"[..], 0));
}

#[test]
fn matches_stay_within_the_window() {
    let json = "{\"seq\":1,\"channel\":\"news\",\"body\":\"hello\"}".repeat(2000);
    let mut payloads = vec![json.into_bytes(), random_bytes(70_000, 1), Vec::new()];
    for period in [5, 100, 250, 251, 256, 257, 300, 600, 3000, 20_000, 40_000] {
        payloads.push(periodic(period, 100_000));
    }
    for window_bits in 8..=15u8 {
        for payload in &payloads {
            let compressed = deflate_message(payload, window_bits);
            let (out, max_distance) = inflate_with_max_distance(&compressed);
            assert!(
                out == *payload,
                "window {window_bits} len {}",
                payload.len()
            );
            assert!(
                max_distance <= 1 << window_bits,
                "window {window_bits}: distance {max_distance}"
            );
        }
    }
}

#[test]
fn window_8_still_compresses_and_larger_windows_reach_further() {
    let payload = periodic(300, 100_000);
    let (_, wide) = inflate_with_max_distance(&deflate_message(&payload, 15));
    assert!(
        wide > 256 && wide % 300 == 0,
        "the window-15 compressor uses the 300-byte repeats: {wide}"
    );
    let narrow = deflate_message(&payload, 8);
    let (_, max_distance) = inflate_with_max_distance(&narrow);
    assert!(max_distance <= 256, "{max_distance}");
    let short = periodic(50, 100_000);
    let compressed = deflate_message(&short, 8);
    assert!(compressed.len() < short.len() / 5, "{}", compressed.len());
}
