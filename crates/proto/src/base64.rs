//! Standard (RFC 4648, padded) base64: encoding and length-checked decoding of the
//! short values the WebSocket handshake carries.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `data` as padded standard base64.
pub(crate) fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn is_alphabet(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Whether `text` is padded standard base64 that decodes to exactly 16 bytes.
pub(crate) fn is_16_bytes(text: &[u8]) -> bool {
    text.len() == 24 && text[..22].iter().all(|&b| is_alphabet(b)) && &text[22..] == b"=="
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_rfc4648_vectors() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn checks_16_byte_values() {
        assert!(is_16_bytes(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_16_bytes(encode(&[0xff; 16]).as_bytes()));
        assert!(!is_16_bytes(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_16_bytes(b"dGhlIHNhbXBsZSBub25j!Q=="));
        assert!(!is_16_bytes(encode(&[1; 15]).as_bytes()));
        assert!(!is_16_bytes(encode(&[1; 17]).as_bytes()));
    }
}
