//! Incremental UTF-8 validation across message fragments, failing as soon as the bytes
//! seen so far cannot be the prefix of valid UTF-8.

use simdutf8::compat::from_utf8;

/// Invalid UTF-8 was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTF-8")]
pub(crate) struct InvalidUtf8;

/// Validates UTF-8 fed in pieces. Holds only the (at most 3) bytes of a code point that
/// is split between pieces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Utf8Validator {
    pending: [u8; 3],
    pending_len: u8,
}

/// Length of the UTF-8 sequence starting with `lead` (only called for valid lead bytes).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        _ => 2,
    }
}

impl Utf8Validator {
    /// A validator at the start of a text.
    pub(crate) const fn new() -> Self {
        Self {
            pending: [0; 3],
            pending_len: 0,
        }
    }

    /// Validates the next piece. Fails if the text so far cannot be a valid prefix.
    pub(crate) fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let want = sequence_len(self.pending[0]);
            let take = (want - have).min(input.len());
            let mut joined = [0u8; 4];
            joined[..have].copy_from_slice(&self.pending[..have]);
            joined[have..have + take].copy_from_slice(&input[..take]);
            let joined = &joined[..have + take];
            match from_utf8(joined) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {
                    self.pending[..joined.len()].copy_from_slice(joined);
                    self.pending_len = joined.len() as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
            input = &input[take..];
        }
        match from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &input[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the text: fails if it stops inside a code point. Resets the validator.
    pub(crate) fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        *self = Self::new();
        if complete { Ok(()) } else { Err(InvalidUtf8) }
    }

    /// Whether no partial code point is pending.
    #[cfg(test)]
    fn is_clean(&self) -> bool {
        self.pending_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_split(bytes: &[u8], splits: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &s in splits {
            v.feed(&bytes[start..s])?;
            start = s;
        }
        v.feed(&bytes[start..])?;
        v.finish()
    }

    #[test]
    fn valid_text_at_every_split() {
        let text = "aé€😀z κόσμε".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(validate_split(text, &[i, j]), Ok(()), "{i} {j}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let text = "€😀é".as_bytes();
        let splits: Vec<usize> = (1..text.len()).collect();
        assert_eq!(validate_split(text, &splits), Ok(()));
    }

    #[test]
    fn invalid_sequences_fail_at_every_split() {
        let cases: [&[u8]; 6] = [
            b"\xff",
            b"ab\xc0\xafcd",
            b"\xed\xa0\x80",     // surrogate
            b"\xf4\x90\x80\x80", // > U+10FFFF
            b"\xe2\x82",         // truncated at end
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        ];
        for bytes in cases {
            for i in 0..=bytes.len() {
                assert_eq!(
                    validate_split(bytes, &[i]),
                    Err(InvalidUtf8),
                    "{bytes:?} {i}"
                );
            }
        }
    }

    #[test]
    fn fails_fast_on_impossible_prefix() {
        let mut v = Utf8Validator::new();
        v.feed(b"ok").unwrap();
        assert_eq!(v.feed(b"\xf4\x90"), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        v.feed(b"\xf4").unwrap();
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn incomplete_prefix_is_pending_not_error() {
        let mut v = Utf8Validator::new();
        v.feed(b"\xf0\x9f").unwrap();
        assert!(!v.is_clean());
        v.feed(b"\x98").unwrap();
        v.feed(b"\x80").unwrap();
        assert!(v.is_clean());
        assert_eq!(v.finish(), Ok(()));
    }
}
