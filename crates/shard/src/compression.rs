//! permessage-deflate on the shard: one compressor per window size per shard, reused for
//! every message (no per-connection state). A fan-out message is compressed once by its
//! owner and the frame shared like the uncompressed one; echoes are compressed here for
//! their connection's window.

use bytes::Bytes;
use ringcast_proto::{MessageDeflater, OpCode, encode_compressed_frame};

/// The window every browser accepts and fan-out frames are compressed with.
pub(crate) const FANOUT_WINDOW_BITS: u8 = 15;

/// Compressors by window size (9..=15), created on first use.
pub(crate) struct Compression {
    enabled: bool,
    min_bytes: usize,
    deflaters: [Option<MessageDeflater>; 7],
}

impl Compression {
    /// Compresses messages of at least `min_bytes` when `enabled`.
    pub(crate) fn new(enabled: bool, min_bytes: usize) -> Self {
        Compression {
            enabled,
            min_bytes,
            deflaters: Default::default(),
        }
    }

    /// A compressed frame (RSV1) for `payload` with `window_bits`, or None when
    /// compression is off or the message is too small to be worth it.
    pub(crate) fn frame(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        window_bits: u8,
    ) -> Option<Bytes> {
        if !self.enabled || payload.len() < self.min_bytes {
            return None;
        }
        let bits = window_bits.clamp(9, 15);
        let deflater =
            self.deflaters[usize::from(bits - 9)].get_or_insert_with(|| MessageDeflater::new(bits));
        let mut compressed = Vec::with_capacity(payload.len() / 2 + 64);
        deflater.deflate_into(payload, &mut compressed);
        let mut frame = Vec::with_capacity(compressed.len() + 10);
        encode_compressed_frame(&mut frame, opcode, &compressed, None);
        Some(Bytes::from(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcast_proto::inflate_message;

    #[test]
    fn compresses_only_when_on_and_large_enough() {
        let big = "x".repeat(1000);
        assert!(
            Compression::new(false, 10)
                .frame(OpCode::Text, big.as_bytes(), 15)
                .is_none()
        );
        let mut c = Compression::new(true, 100);
        assert!(c.frame(OpCode::Text, b"small", 15).is_none());
        for bits in [8, 9, 12, 15] {
            let frame = c
                .frame(OpCode::Text, big.as_bytes(), bits)
                .expect("compressed");
            assert_eq!(frame[0], 0x80 | 0x40 | 0x01, "FIN + RSV1 + text");
            let len = usize::from(frame[1] & 0x7f);
            assert!(len < 125, "1000 x's compress well: {len}");
            let inflated = inflate_message(&frame[2..2 + len], 4096).expect("inflates");
            assert_eq!(inflated, big.as_bytes());
        }
    }
}
