//! WebSocket frame basics: opcodes, header encoding and payload masking (RFC 6455 5.2, 5.3).

/// Frame opcode (RFC 6455 5.2). Reserved opcodes have no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// Continuation of a fragmented data message.
    Continuation = 0,
    /// First (or only) frame of a UTF-8 text message.
    Text = 1,
    /// First (or only) frame of a binary message.
    Binary = 2,
    /// Connection close.
    Close = 8,
    /// Ping.
    Ping = 9,
    /// Pong.
    Pong = 10,
}

impl OpCode {
    /// The opcode for a 4-bit wire value; `None` for reserved values (3-7, 11-15).
    pub(crate) fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Continuation),
            1 => Some(Self::Text),
            2 => Some(Self::Binary),
            8 => Some(Self::Close),
            9 => Some(Self::Ping),
            10 => Some(Self::Pong),
            _ => None,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub(crate) fn is_control(self) -> bool {
        self as u8 & 0x08 != 0
    }
}

/// Largest payload length encoded in the 7-bit length field.
pub(crate) const MAX_SHORT_LEN: usize = 125;

/// Largest payload length of a control frame.
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// Size of the frame header for a payload of `payload_len` bytes.
pub fn header_len(payload_len: usize, masked: bool) -> usize {
    let length_field = match payload_len {
        0..=MAX_SHORT_LEN => 0,
        126..=0xffff => 2,
        _ => 8,
    };
    2 + length_field + if masked { 4 } else { 0 }
}

/// FIN bit of the first header byte.
const FIN: u8 = 0x80;

/// RSV1 bit of the first header byte: the message is compressed (RFC 7692 6).
pub const RSV1: u8 = 0x40;

/// Appends one FIN frame (header + payload, masked with `mask` if Some) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) {
    encode_with_first_byte(out, FIN | opcode as u8, payload, mask);
}

/// Like [`encode_frame`] but with RSV1 set: one unfragmented permessage-deflate message
/// whose payload `compressed` came from [`crate::deflate::deflate_message`].
pub fn encode_compressed_frame(
    out: &mut Vec<u8>,
    opcode: OpCode,
    compressed: &[u8],
    mask: Option<[u8; 4]>,
) {
    encode_with_first_byte(out, FIN | RSV1 | opcode as u8, compressed, mask);
}

/// Appends a frame whose first header byte is `first` (FIN, RSV bits and opcode).
fn encode_with_first_byte(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let len = payload.len();
    out.reserve(header_len(len, mask.is_some()) + len);
    out.push(first);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=MAX_SHORT_LEN => out.push(mask_bit | len as u8),
        126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let start = out.len() + if mask.is_some() { 4 } else { 0 };
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// XOR-masks `buf` in place; `offset` is the position of `buf[0]` within the frame payload
/// (for masking in pieces). Works 8 bytes at a time.
pub(crate) fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut rotated = [0u8; 8];
    for (i, byte) in rotated.iter_mut().enumerate() {
        *byte = mask[(offset + i) % 4];
    }
    let wide = u64::from_ne_bytes(rotated);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(rotated) {
        *byte ^= key;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_bytewise(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(offset + i) % 4];
        }
    }

    #[test]
    fn header_lengths() {
        assert_eq!(header_len(0, false), 2);
        assert_eq!(header_len(125, true), 6);
        assert_eq!(header_len(126, false), 4);
        assert_eq!(header_len(65535, true), 8);
        assert_eq!(header_len(65536, false), 10);
        assert_eq!(header_len(65536, true), 14);
    }

    #[test]
    fn encodes_rfc_examples() {
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::Text, b"Hello", None);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_frame(
            &mut out,
            OpCode::Text,
            b"Hello",
            Some([0x37, 0xfa, 0x21, 0x3d]),
        );
        assert_eq!(
            out,
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }

    #[test]
    fn compressed_frame_sets_rsv1() {
        let mut out = Vec::new();
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        encode_compressed_frame(&mut out, OpCode::Text, &hello, None);
        assert_eq!(out[..2], [0xc1, 0x07]);
        assert_eq!(out[2..], hello);
        out.clear();
        encode_compressed_frame(&mut out, OpCode::Binary, &[9; 300], Some([1, 2, 3, 4]));
        assert_eq!(out[..4], [0xc2, 0xfe, 0x01, 0x2c]);
        assert_eq!(out[4..8], [1, 2, 3, 4]);
        assert_eq!(out[8..12], [8, 11, 10, 13]);
    }

    #[test]
    fn encodes_extended_lengths() {
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::Binary, &[7; 256], None);
        assert_eq!(&out[..4], &[0x82, 126, 0x01, 0x00]);
        assert_eq!(out.len(), 4 + 256);
        out.clear();
        encode_frame(&mut out, OpCode::Binary, &[7; 65536], Some([1, 2, 3, 4]));
        assert_eq!(&out[..10], &[0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(&out[10..14], &[1, 2, 3, 4]);
        assert_eq!(out.len(), 14 + 65536);
    }

    #[test]
    fn mask_matches_bytewise_for_all_offsets_and_lengths() {
        let mask = [0x11, 0x22, 0x44, 0x88];
        for len in 0..40 {
            for offset in 0..9 {
                let data: Vec<u8> = (0..len as u8).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask(&mut fast, mask, offset);
                mask_bytewise(&mut slow, mask, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_whole() {
        let mask = [9, 8, 7, 6];
        let mut whole: Vec<u8> = (0..100).collect();
        let mut pieces = whole.clone();
        apply_mask(&mut whole, mask, 0);
        let (a, rest) = pieces.split_at_mut(13);
        let (b, c) = rest.split_at_mut(30);
        apply_mask(a, mask, 0);
        apply_mask(b, mask, 13);
        apply_mask(c, mask, 43);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn opcode_roundtrip() {
        for v in 0..16u8 {
            match OpCode::from_u8(v) {
                Some(op) => assert_eq!(op as u8, v),
                None => assert!(matches!(v, 3..=7 | 11..=15)),
            }
        }
        assert!(OpCode::Ping.is_control());
        assert!(!OpCode::Binary.is_control());
    }
}
