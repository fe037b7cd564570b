//! Where a message sits in its channel's history: an [`Epoch`] naming the history's
//! generation and an offset (1, 2, 3, … with no gaps within an epoch), written
//! `<epoch>:<offset>` wherever it travels as one string. What a client asks to resume
//! from is a [`Since`].

use std::fmt;

/// Characters of an epoch (the URL-safe base64 alphabet).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Length of an epoch.
pub const EPOCH_LEN: usize = 8;
/// Offsets stay below 2^53 (Redis's Lua numbers are exact up to there), so offset
/// arithmetic never overflows; a larger one in a request is refused.
pub(crate) const MAX_OFFSET: u64 = 1 << 53;

/// A history's generation: eight characters of `[A-Za-z0-9_-]`. A new one is drawn
/// whenever a channel's history starts over (first publish, after it expired or was
/// evicted, after a restart), so a position from a lost history never matches.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch([u8; EPOCH_LEN]);

impl Epoch {
    /// The epoch drawn from 48 bits of `bits`.
    pub(crate) fn from_bits(bits: u64) -> Self {
        let mut out = [0u8; EPOCH_LEN];
        for (i, c) in out.iter_mut().enumerate() {
            *c = ALPHABET[((bits >> (6 * i)) & 63) as usize];
        }
        Epoch(out)
    }

    /// Parses an epoch; None unless exactly [`EPOCH_LEN`] characters of the alphabet.
    pub fn parse(text: &str) -> Option<Self> {
        Epoch::from_ascii(text.as_bytes().try_into().ok()?)
    }

    /// The epoch in `bytes`; None unless every byte is of the alphabet.
    pub fn from_ascii(bytes: [u8; EPOCH_LEN]) -> Option<Self> {
        bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .then_some(Epoch(bytes))
    }

    /// The epoch as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII from the alphabet is ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message's place in its channel's history (or, for a client, the last one it has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The history's generation.
    pub epoch: Epoch,
    /// 1 for the first message of the epoch; 0 names the point before it.
    pub offset: u64,
}

impl Position {
    /// Parses `<epoch>:<offset>`.
    pub fn parse(text: &str) -> Option<Self> {
        let (epoch, offset) = text.split_once(':')?;
        let offset = offset.parse().ok().filter(|o| *o < MAX_OFFSET)?;
        Some(Position {
            epoch: Epoch::parse(epoch)?,
            offset,
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

/// What a subscriber asks to receive before the live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Every kept message after this position.
    After(Position),
    /// The channel's latest kept message (its "current value").
    Last,
    /// A position that cannot be read (an SSE `Last-Event-ID` this server did not
    /// write): answered as one that is not kept.
    Unknown,
}

impl Since {
    /// Parses `last` or `<epoch>:<offset>`.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "last" {
            return Some(Since::Last);
        }
        Position::parse(text).map(Since::After)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_eight_url_safe_characters_and_parse_back() {
        for bits in [0, 1, u64::MAX, 0x1234_5678_9abc] {
            let epoch = Epoch::from_bits(bits);
            assert_eq!(epoch.as_str().len(), EPOCH_LEN);
            assert_eq!(Epoch::parse(epoch.as_str()), Some(epoch));
        }
        assert_ne!(Epoch::from_bits(1), Epoch::from_bits(2));
        for bad in ["", "abc", "abcdefghi", "abcd:fgh", "abcdéfg", "abcd efg"] {
            assert_eq!(Epoch::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn positions_and_since_parse_strictly() {
        let p = Position::parse("k3J9-_aZ:41").expect("valid");
        assert_eq!(p.offset, 41);
        assert_eq!(p.to_string(), "k3J9-_aZ:41");
        assert_eq!(Since::parse("last"), Some(Since::Last));
        assert_eq!(
            Since::parse("k3J9-_aZ:0"),
            Some(Since::After(Position { offset: 0, ..p }))
        );
        for bad in [
            "41",
            "k3J9-_aZ",
            "k3J9-_aZ:",
            "k3J9-_aZ:-1",
            "k3J9-_aZ:1x",
            ":1",
            "LAST",
            "k3J9-_aZ:18446744073709551615",
            "k3J9-_aZ:9007199254740992",
        ] {
            assert_eq!(Since::parse(bad), None, "{bad:?}");
        }
    }
}
