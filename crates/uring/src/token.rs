//! The `user_data` encoding of every submission: which operation it is and whom it is for.
//!
//! Layout (most significant first): op kind 8 bits | generation 24 bits | id 32 bits.
//! Kind 0 is never produced, so a zeroed `user_data` never decodes.

/// Number of generation bits carried through a completion; higher bits are dropped.
pub const GEN_BITS: u32 = 24;
/// Mask applied to generations passed to the reactor (see [`GEN_BITS`]).
pub const GEN_MASK: u32 = (1 << GEN_BITS) - 1;

/// Which operation a submission carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Connect = 4,
    Wake = 5,
}

impl OpKind {
    fn from_bits(bits: u8) -> Option<OpKind> {
        match bits {
            1 => Some(OpKind::Accept),
            2 => Some(OpKind::Recv),
            3 => Some(OpKind::Send),
            4 => Some(OpKind::Connect),
            5 => Some(OpKind::Wake),
            _ => None,
        }
    }
}

/// A decoded `user_data` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: OpKind,
    pub(crate) id: u32,
    pub(crate) generation: u32,
}

impl Token {
    /// A token for `kind` addressed to `id`; `generation` is reduced to [`GEN_BITS`] bits.
    pub(crate) fn new(kind: OpKind, id: u32, generation: u32) -> Token {
        Token {
            kind,
            id,
            generation: generation & GEN_MASK,
        }
    }

    /// The 64-bit `user_data` value.
    pub(crate) fn encode(self) -> u64 {
        (u64::from(self.kind as u8) << 56) | (u64::from(self.generation) << 32) | u64::from(self.id)
    }

    /// Decodes a `user_data` value; `None` when the kind is unknown.
    pub(crate) fn decode(user_data: u64) -> Option<Token> {
        let kind = OpKind::from_bits((user_data >> 56) as u8)?;
        Some(Token {
            kind,
            id: user_data as u32,
            generation: ((user_data >> 32) as u32) & GEN_MASK,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        for kind in [
            OpKind::Accept,
            OpKind::Recv,
            OpKind::Send,
            OpKind::Connect,
            OpKind::Wake,
        ] {
            let token = Token::new(kind, u32::MAX, GEN_MASK);
            assert_eq!(Token::decode(token.encode()), Some(token));
            let token = Token::new(kind, 7, 0);
            assert_eq!(Token::decode(token.encode()), Some(token));
        }
    }

    #[test]
    fn generation_is_truncated_to_24_bits() {
        let token = Token::new(OpKind::Recv, 1, 0x0123_4567);
        assert_eq!(token.generation, 0x23_4567);
        assert_eq!(
            Token::decode(token.encode()).map(|t| t.generation),
            Some(0x23_4567)
        );
    }

    #[test]
    fn rejects_unknown_kinds() {
        assert_eq!(Token::decode(0), None);
        assert_eq!(Token::decode(0xff << 56), None);
        assert_eq!(Token::decode(6 << 56), None);
    }
}
