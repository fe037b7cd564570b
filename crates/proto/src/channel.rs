//! Channel names: which strings may name a pub/sub channel in a request path.

/// Longest allowed channel name, in bytes.
/// Longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 255;

/// Whether `name` is a valid channel name: 1..=255 bytes of `[A-Za-z0-9_.:-]`.
pub fn is_valid_channel(name: &str) -> bool {
    (1..=MAX_CHANNEL_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_allowed_characters() {
        assert!(is_valid_channel("news"));
        assert!(is_valid_channel("a.b:c-d_E9"));
        assert!(is_valid_channel(&"x".repeat(MAX_CHANNEL_LEN)));
    }

    #[test]
    fn rejects_bad_names() {
        assert!(!is_valid_channel(""));
        assert!(!is_valid_channel(&"x".repeat(MAX_CHANNEL_LEN + 1)));
        for bad in ["a/b", "a b", "a%20", "é", "a?b", "a#b", "a+b"] {
            assert!(!is_valid_channel(bad), "{bad}");
        }
    }
}
