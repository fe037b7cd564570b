//! Whole-message DEFLATE for permessage-deflate without context takeover (RFC 7692 7.2):
//! raw deflate with a sync flush whose trailing `00 00 ff ff` is removed, and the
//! reverse, bounded by a maximum message size so a small compressed message cannot
//! expand without limit.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::ProtocolError;

/// The end of an empty stored block that a sync flush ends with; removed after
/// compressing and appended before inflating (RFC 7692 7.2.1, 7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Smallest window zlib compresses raw deflate with. A window of 2^9 bytes never emits a
/// match distance over 250 (zlib's largest distance is the window size minus 262), so
/// its output is also valid for a peer that allowed only 2^8 = 256 bytes.
const MIN_COMPRESS_WINDOW_BITS: u8 = 9;

/// Largest LZ77 window, 2^15 bytes.
const MAX_WINDOW_BITS: u8 = 15;

/// Output space grown at a time while inflating, before the limit caps it.
const INFLATE_CHUNK: usize = 4096;

/// Stored (uncompressed) DEFLATE blocks carry at most this many bytes.
const MAX_STORED_BLOCK: usize = 0xffff;

/// Largest compressed message accepted for a limit of `max_message` inflated bytes:
/// DEFLATE can expand data (up to 9 bits a byte with fixed Huffman codes, plus block
/// headers and one sync flush per frame), so compressed payloads get 1/8 + 1 KiB slack.
pub fn max_compressed_len(max_message: usize) -> usize {
    max_message
        .saturating_add(max_message / 8)
        .saturating_add(1024)
}

/// A reusable compressor for whole messages: keeps zlib's buffers allocated between
/// messages but no history (each message is compressed independently), so its output
/// can be shared by every connection that negotiated a window of at least its size.
pub struct MessageDeflater {
    compress: Compress,
    window_bits: u8,
}

impl std::fmt::Debug for MessageDeflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageDeflater")
            .field("window_bits", &self.window_bits)
            .finish_non_exhaustive()
    }
}

impl MessageDeflater {
    /// A compressor (default level) whose LZ77 window is at most 2^`window_bits` bytes.
    /// Values below 9 compress with 9 (whose matches stay within 256 bytes, see the
    /// module constants), values above 15 with 15.
    pub fn new(window_bits: u8) -> Self {
        let window_bits = window_bits.clamp(MIN_COMPRESS_WINDOW_BITS, MAX_WINDOW_BITS);
        Self {
            compress: Compress::new_with_window_bits(Compression::default(), false, window_bits),
            window_bits,
        }
    }

    /// The window size (log2) this compressor really uses, 9..=15.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Appends the compressed form of `payload` (one complete message, trailing
    /// `00 00 ff ff` removed) to `out`.
    pub fn deflate_into(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let compressed = self.sync_flush(payload, out);
        self.compress.reset();
        if compressed.is_err() {
            out.truncate(start);
            append_stored(payload, out);
        }
        if out[start..].ends_with(&SYNC_TAIL) {
            out.truncate(out.len() - SYNC_TAIL.len());
        }
    }

    /// Compresses `payload` and sync-flushes, appending everything to `out`.
    fn sync_flush(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
        out.reserve(payload.len() / 2 + 64);
        let mut input = payload;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.compress.total_in();
            self.compress
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|_| ())?;
            let used = usize::try_from(self.compress.total_in() - before).map_err(|_| ())?;
            input = &input[used..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

/// Appends `payload` as stored DEFLATE blocks followed by an empty one: a valid encoding
/// for any window, used only if zlib reports an error.
fn append_stored(payload: &[u8], out: &mut Vec<u8>) {
    for block in payload.chunks(MAX_STORED_BLOCK) {
        let len = block.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.push(0x00);
    out.extend_from_slice(&SYNC_TAIL);
}

/// Compresses one whole message (raw deflate, no context takeover, the final 4 bytes
/// `00 00 ff ff` removed per RFC 7692 7.2.1) with a window of at most 2^`window_bits`
/// bytes (8 is honoured: see [`MessageDeflater::new`]).
pub fn deflate_message(payload: &[u8], window_bits: u8) -> Vec<u8> {
    let mut out = Vec::new();
    MessageDeflater::new(window_bits).deflate_into(payload, &mut out);
    out
}

/// Inflates one whole compressed message payload (appending `00 00 ff ff`) with a fresh
/// inflater. Fails with [`ProtocolError::TooBig`] as soon as the output would exceed
/// `max` bytes (the output buffer never grows past `max + 1`), and with
/// [`ProtocolError::BadCompressedData`] on invalid DEFLATE data. Bytes after a final
/// block (BFINAL = 1) are ignored.
pub fn inflate_message(compressed: &[u8], max: usize) -> Result<Vec<u8>, ProtocolError> {
    let mut inflater = Decompress::new(false);
    let limit = max.saturating_add(1);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(3).max(64).min(limit));
    for mut input in [compressed, &SYNC_TAIL[..]] {
        loop {
            if out.len() == out.capacity() {
                if out.len() >= limit {
                    return Err(ProtocolError::TooBig);
                }
                let grow = out.capacity().max(INFLATE_CHUNK).min(limit - out.len());
                out.reserve_exact(grow);
            }
            let (before_in, before_out) = (inflater.total_in(), out.len());
            let status = inflater
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(|_| ProtocolError::BadCompressedData)?;
            if out.len() > max {
                return Err(ProtocolError::TooBig);
            }
            let used = usize::try_from(inflater.total_in() - before_in)
                .map_err(|_| ProtocolError::BadCompressedData)?;
            input = &input[used..];
            let output_full = out.len() == out.capacity();
            match status {
                Status::StreamEnd => return Ok(out),
                _ if input.is_empty() && !output_full => break,
                _ if used == 0 && out.len() == before_out && !output_full => {
                    return Err(ProtocolError::BadCompressedData);
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7692 7.2.3.1: "Hello" compressed with one fixed-Huffman block.
    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    /// Deterministic pseudo-random bytes (xorshift), incompressible.
    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// Repetitive JSON-like text.
    fn text(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut i = 0u32;
        while out.len() < len {
            out.extend_from_slice(
                format!("{{\"seq\":{i},\"channel\":\"news\",\"body\":\"héllo wörld\"}},")
                    .as_bytes(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    }

    #[test]
    fn rfc_examples_inflate_to_hello() {
        assert_eq!(inflate_message(&HELLO, 100).unwrap(), b"Hello");
        // 7.2.3.3: stored block.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate_message(&stored, 100).unwrap(), b"Hello");
        // 7.2.3.4: BFINAL = 1, followed by the start of an empty stored block.
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_message(&bfinal, 100).unwrap(), b"Hello");
        // 7.2.3.5: two DEFLATE blocks in one message.
        let two = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(inflate_message(&two, 100).unwrap(), b"Hello");
    }

    #[test]
    fn deflate_matches_rfc_examples() {
        assert_eq!(deflate_message(b"Hello", 15), HELLO);
        // 7.2.3.6: an empty message is a single 0x00 byte.
        assert_eq!(deflate_message(b"", 15), [0x00]);
        assert_eq!(inflate_message(&[0x00], 0).unwrap(), b"");
    }

    #[test]
    fn round_trips_every_size_kind_and_window() {
        for window_bits in 8..=15 {
            for len in [0, 1, 125, 126, 4096, 65536] {
                for (kind, payload) in [
                    ("random", random_bytes(len, len as u64 + 7)),
                    ("text", text(len)),
                ] {
                    let compressed = deflate_message(&payload, window_bits);
                    assert!(!compressed.ends_with(&SYNC_TAIL) || compressed.len() < 4);
                    let back = inflate_message(&compressed, len).unwrap();
                    assert!(back == payload, "{kind} len {len} window {window_bits}");
                }
            }
        }
    }

    #[test]
    fn text_compresses() {
        let payload = text(65536);
        assert!(deflate_message(&payload, 15).len() < payload.len() / 4);
        assert!(deflate_message(&payload, 9).len() < payload.len() / 2);
    }

    #[test]
    fn small_windows_still_compress_short_repeats() {
        let short = b"abcdefgh".repeat(1000);
        let compressed = deflate_message(&short, 8);
        assert!(compressed.len() < 200, "{}", compressed.len());
        assert_eq!(inflate_message(&compressed, short.len()).unwrap(), short);
    }

    #[test]
    fn reused_deflater_keeps_no_history() {
        let mut deflater = MessageDeflater::new(15);
        assert_eq!(deflater.window_bits(), 15);
        assert_eq!(MessageDeflater::new(8).window_bits(), 9);
        assert_eq!(MessageDeflater::new(40).window_bits(), 15);
        let payload = text(3000);
        let mut first = Vec::new();
        let mut second = vec![0xaa];
        deflater.deflate_into(&payload, &mut first);
        deflater.deflate_into(&payload, &mut second);
        assert_eq!(first, second[1..]);
        assert_eq!(first, deflate_message(&payload, 15));
        assert_eq!(inflate_message(&second[1..], 3000).unwrap(), payload);
    }

    #[test]
    fn stored_fallback_is_valid_deflate() {
        for len in [0, 5, 65535, 65536, 140_000] {
            let payload = random_bytes(len, 11);
            let mut out = Vec::new();
            append_stored(&payload, &mut out);
            assert!(out.ends_with(&SYNC_TAIL));
            out.truncate(out.len() - 4);
            assert_eq!(inflate_message(&out, len).unwrap(), payload);
        }
    }

    #[test]
    fn limit_is_exact() {
        let payload = text(1000);
        let compressed = deflate_message(&payload, 15);
        assert_eq!(inflate_message(&compressed, 1000).unwrap(), payload);
        assert_eq!(
            inflate_message(&compressed, 999),
            Err(ProtocolError::TooBig)
        );
        assert_eq!(inflate_message(&HELLO, 4), Err(ProtocolError::TooBig));
        assert_eq!(inflate_message(&HELLO, 5).unwrap(), b"Hello");
    }

    #[test]
    fn zip_bomb_stops_at_the_limit() {
        let bomb = deflate_message(&vec![0u8; 4 << 20], 15);
        assert!(bomb.len() < 8192, "{}", bomb.len());
        assert_eq!(inflate_message(&bomb, 64 << 10), Err(ProtocolError::TooBig));
        assert_eq!(inflate_message(&bomb, 4 << 20).unwrap().len(), 4 << 20);
    }

    #[test]
    fn garbage_is_rejected() {
        // BTYPE = 11 is reserved.
        assert_eq!(
            inflate_message(&[0xff, 0xff, 0xff], 100),
            Err(ProtocolError::BadCompressedData)
        );
        // Stored block whose NLEN is not the complement of LEN.
        assert_eq!(
            inflate_message(&[0x00, 0x05, 0x00, 0x00, 0x00, b'a'], 100),
            Err(ProtocolError::BadCompressedData)
        );
    }

    #[test]
    fn compressed_limit_has_slack() {
        assert_eq!(max_compressed_len(0), 1024);
        assert_eq!(max_compressed_len(8000), 8000 + 1000 + 1024);
        assert_eq!(max_compressed_len(usize::MAX), usize::MAX);
        let payload = random_bytes(100_000, 5);
        assert!(deflate_message(&payload, 15).len() <= max_compressed_len(payload.len()));
    }
}
