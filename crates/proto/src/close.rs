//! Close frames: status codes (RFC 6455 7.4), close payload building and code validation.

/// Close status codes used by ringcast.
pub mod code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Endpoint going away (server shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Unsupported data type.
    pub const UNSUPPORTED: u16 = 1003;
    /// Invalid payload data (e.g. bad UTF-8 in text).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation.
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal server error.
    pub const INTERNAL: u16 = 1011;
    /// Try again later (IANA registry): a resuming client's backlog did not fit.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Longest close reason that fits a control frame (125 - 2 code bytes).
pub(crate) const MAX_REASON_LEN: usize = 123;

/// Close frame payload: 2-byte big-endian code + reason (reason truncated to fit 123 bytes
/// at a char boundary).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

/// Whether a code received from a peer is allowed on the wire (RFC 6455 7.4):
/// 1000-1003, 1007-1014 (1012-1014 are IANA-registered) and 3000-4999.
pub fn is_valid_received_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_code_and_reason() {
        assert_eq!(close_payload(1000, ""), [0x03, 0xe8]);
        assert_eq!(close_payload(1001, "bye"), b"\x03\xe9bye");
    }

    #[test]
    fn long_reason_is_cut_at_char_boundary() {
        let reason = "é".repeat(100);
        let payload = close_payload(code::NORMAL, &reason);
        assert!(payload.len() <= 125);
        assert_eq!(payload.len(), 2 + 122);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        assert_eq!(close_payload(code::NORMAL, &"a".repeat(300)).len(), 125);
    }

    #[test]
    fn received_code_validity() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1014, 3000, 4999,
        ] {
            assert!(is_valid_received_code(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_received_code(bad), "{bad}");
        }
    }
}
