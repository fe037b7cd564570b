//! The wire format of a message that travels through Redis.
//!
//! A message published by a ringcast node carries a 13-byte header before the payload, so
//! every receiving node can tell text from binary and measure publish→delivery latency:
//!
//! ```text
//! offset  size  field
//! 0       3     magic 0xFF 'r' 'c'   (0xFF never occurs in UTF-8, so no text payload starts so)
//! 3       1     version: 1, or 2 for a message with a position
//! 4       8     publish time, Unix nanoseconds, big-endian u64
//! 12      1     flags: bit 0 = binary payload; other bits must be 0
//! 13      ..    payload (version 1)
//! ```
//!
//! Version 2 is written by the history script (`history.rs`), which appends the message
//! to the channel's history in Redis and publishes it in one step; after the flags it
//! carries the message's position, as text so the script can write it:
//!
//! ```text
//! 13      8     epoch, [A-Za-z0-9_-]
//! 21      20    offset, decimal, zero-padded
//! 41      ..    payload
//! ```
//!
//! A payload from any other publisher (`redis-cli PUBLISH ringcast:news hello`) has no
//! magic and is delivered as it is: as text when it is valid UTF-8, else as binary. A
//! payload that starts with the magic but has a short header, another version or unknown
//! flags is refused as a bad envelope.

use bytes::{BufMut, Bytes, BytesMut};

/// First bytes of every enveloped message.
pub const MAGIC: [u8; 3] = [0xFF, b'r', b'c'];
/// The envelope version without a position.
pub const VERSION: u8 = 1;
/// The envelope version with a position.
pub const VERSION_POSITIONED: u8 = 2;
/// Header length before the payload (version 1).
pub const HEADER_LEN: usize = 13;
/// Bytes of an epoch.
pub const EPOCH_BYTES: usize = 8;
/// Bytes of an offset (decimal digits).
const OFFSET_DIGITS: usize = 20;
/// Header length before the payload (version 2), the longest header.
pub const POSITIONED_HEADER_LEN: usize = HEADER_LEN + EPOCH_BYTES + OFFSET_DIGITS;

/// A message's place in its channel's history, as Redis assigned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The history's generation (`[A-Za-z0-9_-]`).
    pub epoch: [u8; EPOCH_BYTES],
    /// 1, 2, 3, … within the epoch.
    pub offset: u64,
}
/// Flag bit: the payload is binary.
const FLAG_BINARY: u8 = 1;

/// A message as read off Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The payload for subscribers.
    pub payload: Bytes,
    /// Whether it goes out as a binary frame.
    pub binary: bool,
    /// Unix nanoseconds at which a ringcast node published it (none for foreign payloads).
    pub published_at_ns: Option<u64>,
    /// Its position, when it was published with history (version 2).
    pub position: Option<Position>,
}

/// A message starts with the magic but is not a valid envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad envelope")]
pub struct BadEnvelope;

/// Wraps `payload` in an envelope stamped `published_at_ns`.
pub fn seal(payload: &[u8], binary: bool, published_at_ns: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.put_slice(&header(VERSION, binary, published_at_ns));
    out.put_slice(payload);
    out.freeze()
}

/// The first 13 bytes of an envelope of `version`.
pub fn header(version: u8, binary: bool, published_at_ns: u64) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..3].copy_from_slice(&MAGIC);
    out[3] = version;
    out[4..12].copy_from_slice(&published_at_ns.to_be_bytes());
    out[12] = if binary { FLAG_BINARY } else { 0 };
    out
}

/// Reads the position of a version 2 envelope from the bytes after its flags.
fn position(raw: &[u8]) -> Option<Position> {
    let epoch: [u8; EPOCH_BYTES] = raw.get(..EPOCH_BYTES)?.try_into().ok()?;
    let valid_epoch = epoch
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    let digits = raw.get(EPOCH_BYTES..EPOCH_BYTES + OFFSET_DIGITS)?;
    if !valid_epoch || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Offsets start at 1 (0 names the point before the first message) and stay below
    // 2^53, where the script's Lua numbers stop being exact.
    let offset = std::str::from_utf8(digits)
        .ok()?
        .parse()
        .ok()
        .filter(|o| (1..1 << 53).contains(o))?;
    Some(Position { epoch, offset })
}

/// Reads a message received from Redis: an envelope, or a foreign payload as it is.
pub fn open(raw: Bytes) -> Result<Opened, BadEnvelope> {
    if !raw.starts_with(&MAGIC) {
        let binary = simdutf8::basic::from_utf8(&raw).is_err();
        return Ok(Opened {
            payload: raw,
            binary,
            published_at_ns: None,
            position: None,
        });
    }
    let versioned = raw.len() >= HEADER_LEN && matches!(raw[3], VERSION | VERSION_POSITIONED);
    if !versioned || raw[12] & !FLAG_BINARY != 0 {
        return Err(BadEnvelope);
    }
    let (position, start) = match raw[3] {
        VERSION_POSITIONED => (
            Some(position(&raw[HEADER_LEN..]).ok_or(BadEnvelope)?),
            POSITIONED_HEADER_LEN,
        ),
        _ => (None, HEADER_LEN),
    };
    let mut stamp = [0u8; 8];
    stamp.copy_from_slice(&raw[4..12]);
    let binary = raw[12] & FLAG_BINARY != 0;
    let payload = raw.slice(start..);
    if !binary && simdutf8::basic::from_utf8(&payload).is_err() {
        return Err(BadEnvelope);
    }
    Ok(Opened {
        payload,
        binary,
        published_at_ns: Some(u64::from_be_bytes(stamp)),
        position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_messages_open_to_the_same_payload() {
        for (payload, binary) in [
            (&b"hello"[..], false),
            (&b"\xff\x00"[..], true),
            (b"", false),
        ] {
            let sealed = seal(payload, binary, 1_700_000_000_123_456_789);
            assert_eq!(sealed.len(), HEADER_LEN + payload.len());
            let opened = open(sealed).unwrap();
            assert_eq!(&opened.payload[..], payload);
            assert_eq!(opened.binary, binary);
            assert_eq!(opened.published_at_ns, Some(1_700_000_000_123_456_789));
        }
    }

    #[test]
    fn foreign_payloads_pass_as_they_are() {
        let text = open(Bytes::from_static(b"hello")).unwrap();
        assert_eq!(
            text,
            Opened {
                payload: Bytes::from_static(b"hello"),
                binary: false,
                published_at_ns: None,
                position: None,
            }
        );
        let binary = open(Bytes::from_static(b"\xfe\x00")).unwrap();
        assert!(binary.binary);
        assert_eq!(open(Bytes::new()).unwrap().payload.len(), 0);
        // The magic's first byte alone is not the magic.
        assert!(open(Bytes::from_static(b"\xffxyz")).unwrap().binary);
    }

    #[test]
    fn broken_envelopes_are_refused() {
        let good = seal(b"x", false, 5);
        for cut in 3..HEADER_LEN {
            assert_eq!(open(good.slice(..cut)), Err(BadEnvelope), "cut at {cut}");
        }
        let mut wrong_version = good.to_vec();
        wrong_version[3] = 3;
        assert_eq!(open(Bytes::from(wrong_version)), Err(BadEnvelope));
        let mut unknown_flag = good.to_vec();
        unknown_flag[12] = 0x80;
        assert_eq!(open(Bytes::from(unknown_flag)), Err(BadEnvelope));
        let text_flag_bad_utf8 = seal(b"\xff", false, 5);
        assert_eq!(open(text_flag_bad_utf8), Err(BadEnvelope));
    }

    /// A version 2 envelope as the history script writes it.
    fn positioned(epoch: &str, offset: &str, payload: &[u8]) -> Bytes {
        let mut out = header(VERSION_POSITIONED, false, 9).to_vec();
        out.extend_from_slice(epoch.as_bytes());
        out.extend_from_slice(offset.as_bytes());
        out.extend_from_slice(payload);
        Bytes::from(out)
    }

    #[test]
    fn positioned_envelopes_carry_epoch_and_offset_and_bad_ones_are_refused() {
        let opened = open(positioned("k3J9-_aZ", "00000000000000000042", b"hi")).unwrap();
        assert_eq!(&opened.payload[..], b"hi");
        assert_eq!(
            opened.position,
            Some(Position {
                epoch: *b"k3J9-_aZ",
                offset: 42
            })
        );
        for (epoch, offset) in [
            ("k3J9 _aZ", "00000000000000000042"),
            ("k3J9-_aZ", "0000000000000000004x"),
            ("k3J9-_aZ", "99999999999999999999"),
            ("k3J9-_aZ", "000000000000000000"),
            ("k3J9-_aZ", "00000000000000000000"),
            ("k3J9-_aZ", "18446744073709551615"),
        ] {
            assert_eq!(
                open(positioned(epoch, offset, b"")),
                Err(BadEnvelope),
                "{epoch} {offset}"
            );
        }
    }
}
