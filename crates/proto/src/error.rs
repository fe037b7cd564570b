//! [`ProtocolError`]: the ways a peer can break RFC 6455 (and RFC 7692), each with the
//! close code the connection ends with and its metric label.

/// A protocol violation by the peer. The decoder is poisoned afterwards.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// Server received an unmasked frame.
    #[error("unmasked frame from client")]
    Unmasked,
    /// Client received a masked frame.
    #[error("masked frame from server")]
    Masked,
    /// RSV1-3 set without a negotiated extension, or RSV1 on a control or continuation
    /// frame.
    #[error("reserved bits set")]
    ReservedBits,
    /// Reserved opcode.
    #[error("reserved opcode")]
    ReservedOpcode,
    /// Control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// Control frame payload over 125 bytes.
    #[error("control frame too long")]
    ControlTooLong,
    /// Continuation frame with no message in progress.
    #[error("unexpected continuation frame")]
    UnexpectedContinuation,
    /// New data frame while a fragmented message is in progress.
    #[error("expected continuation frame")]
    ExpectedContinuation,
    /// Close payload of length 1.
    #[error("close payload of length 1")]
    BadCloseLength,
    /// Close code not allowed on the wire.
    #[error("invalid close code")]
    BadCloseCode,
    /// Invalid UTF-8 in a text message or close reason.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// Message larger than the configured maximum.
    #[error("message too big")]
    TooBig,
    /// Payload length not encoded with the minimal number of bytes.
    #[error("non-minimal payload length")]
    NonMinimalLength,
    /// 64-bit payload length with the most significant bit set.
    #[error("payload length out of range")]
    LengthOverflow,
    /// A compressed message is not valid DEFLATE data.
    #[error("invalid compressed data")]
    BadCompressedData,
}

impl ProtocolError {
    /// Every error, for exporting each label at 0 from startup.
    pub const ALL: [ProtocolError; 15] = [
        Self::Unmasked,
        Self::Masked,
        Self::ReservedBits,
        Self::ReservedOpcode,
        Self::FragmentedControl,
        Self::ControlTooLong,
        Self::UnexpectedContinuation,
        Self::ExpectedContinuation,
        Self::BadCloseLength,
        Self::BadCloseCode,
        Self::InvalidUtf8,
        Self::TooBig,
        Self::NonMinimalLength,
        Self::LengthOverflow,
        Self::BadCompressedData,
    ];

    /// Close code to send to the peer: 1007 for bad UTF-8, 1009 for too big, else 1002.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::InvalidUtf8 => crate::close::code::INVALID_PAYLOAD,
            Self::TooBig => crate::close::code::TOO_BIG,
            _ => crate::close::code::PROTOCOL_ERROR,
        }
    }

    /// snake_case metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unmasked => "unmasked",
            Self::Masked => "masked",
            Self::ReservedBits => "reserved_bits",
            Self::ReservedOpcode => "reserved_opcode",
            Self::FragmentedControl => "fragmented_control",
            Self::ControlTooLong => "control_too_long",
            Self::UnexpectedContinuation => "unexpected_continuation",
            Self::ExpectedContinuation => "expected_continuation",
            Self::BadCloseLength => "bad_close_length",
            Self::BadCloseCode => "bad_close_code",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::TooBig => "too_big",
            Self::NonMinimalLength => "non_minimal_length",
            Self::LengthOverflow => "length_overflow",
            Self::BadCompressedData => "bad_compressed_data",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_error_once() {
        // No wildcard: a new variant does not compile here until it is in `ALL`.
        let position = |err: ProtocolError| match err {
            ProtocolError::Unmasked => 0,
            ProtocolError::Masked => 1,
            ProtocolError::ReservedBits => 2,
            ProtocolError::ReservedOpcode => 3,
            ProtocolError::FragmentedControl => 4,
            ProtocolError::ControlTooLong => 5,
            ProtocolError::UnexpectedContinuation => 6,
            ProtocolError::ExpectedContinuation => 7,
            ProtocolError::BadCloseLength => 8,
            ProtocolError::BadCloseCode => 9,
            ProtocolError::InvalidUtf8 => 10,
            ProtocolError::TooBig => 11,
            ProtocolError::NonMinimalLength => 12,
            ProtocolError::LengthOverflow => 13,
            ProtocolError::BadCompressedData => 14,
        };
        for (i, err) in ProtocolError::ALL.into_iter().enumerate() {
            assert_eq!(position(err), i, "{err:?}");
        }
    }
}
