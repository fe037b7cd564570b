//! The wire format of a message that travels through Redis.
//!
//! A message published by a ringcast node carries a 13-byte header before the payload, so
//! every receiving node can tell text from binary and measure publish→delivery latency:
//!
//! ```text
//! offset  size  field
//! 0       3     magic 0xFF 'r' 'c'   (0xFF never occurs in UTF-8, so no text payload starts so)
//! 3       1     version, 1
//! 4       8     publish time, Unix nanoseconds, big-endian u64
//! 12      1     flags: bit 0 = binary payload; other bits must be 0
//! 13      ..    payload
//! ```
//!
//! A payload from any other publisher (`redis-cli PUBLISH ringcast:news hello`) has no
//! magic and is delivered as it is: as text when it is valid UTF-8, else as binary. A
//! payload that starts with the magic but has a short header, another version or unknown
//! flags is refused as a bad envelope.

use bytes::{BufMut, Bytes, BytesMut};

/// First bytes of every enveloped message.
pub const MAGIC: [u8; 3] = [0xFF, b'r', b'c'];
/// The only envelope version.
pub const VERSION: u8 = 1;
/// Header length before the payload.
pub const HEADER_LEN: usize = 13;
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
}

/// A message starts with the magic but is not a valid envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad envelope")]
pub struct BadEnvelope;

/// Wraps `payload` in an envelope stamped `published_at_ns`.
pub fn seal(payload: &[u8], binary: bool, published_at_ns: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.put_slice(&MAGIC);
    out.put_u8(VERSION);
    out.put_u64(published_at_ns);
    out.put_u8(if binary { FLAG_BINARY } else { 0 });
    out.put_slice(payload);
    out.freeze()
}

/// Reads a message received from Redis: an envelope, or a foreign payload as it is.
pub fn open(raw: Bytes) -> Result<Opened, BadEnvelope> {
    if !raw.starts_with(&MAGIC) {
        let binary = simdutf8::basic::from_utf8(&raw).is_err();
        return Ok(Opened {
            payload: raw,
            binary,
            published_at_ns: None,
        });
    }
    if raw.len() < HEADER_LEN || raw[3] != VERSION || raw[12] & !FLAG_BINARY != 0 {
        return Err(BadEnvelope);
    }
    let mut stamp = [0u8; 8];
    stamp.copy_from_slice(&raw[4..12]);
    let binary = raw[12] & FLAG_BINARY != 0;
    let payload = raw.slice(HEADER_LEN..);
    if !binary && simdutf8::basic::from_utf8(&payload).is_err() {
        return Err(BadEnvelope);
    }
    Ok(Opened {
        payload,
        binary,
        published_at_ns: Some(u64::from_be_bytes(stamp)),
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
                published_at_ns: None
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
        wrong_version[3] = 2;
        assert_eq!(open(Bytes::from(wrong_version)), Err(BadEnvelope));
        let mut unknown_flag = good.to_vec();
        unknown_flag[12] = 0x80;
        assert_eq!(open(Bytes::from(unknown_flag)), Err(BadEnvelope));
        let text_flag_bad_utf8 = seal(b"\xff", false, 5);
        assert_eq!(open(text_flag_bad_utf8), Err(BadEnvelope));
    }
}
