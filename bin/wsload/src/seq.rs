//! Per-connection sequence check for publisher bodies of the form `"<seq>:<anything>"` (or just
//! `"<seq>"`): from the first number seen, each next one must be exactly one more.

/// What one observed sequence number means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// First number seen, or exactly one more than the last.
    InOrder,
    /// Numbers were skipped; how many.
    Gap(u64),
    /// Not larger than the last one seen.
    Dup,
}

/// Tracks the sequence numbers one connection received.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqTracker {
    /// Largest number seen so far.
    last: Option<u64>,
}

impl SeqTracker {
    /// Records `seq` and classifies it.
    pub fn observe(&mut self, seq: u64) -> SeqEvent {
        match self.last {
            Some(last) if seq <= last => SeqEvent::Dup,
            Some(last) => {
                self.last = Some(seq);
                let skipped = seq - last - 1;
                if skipped == 0 {
                    SeqEvent::InOrder
                } else {
                    SeqEvent::Gap(skipped)
                }
            }
            None => {
                self.last = Some(seq);
                SeqEvent::InOrder
            }
        }
    }
}

/// The leading decimal number of `body` when it is followed by `:` or the end of the body.
pub fn parse_seq(body: &[u8]) -> Option<u64> {
    let digits = body.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || (digits < body.len() && body[digits] != b':') {
        return None;
    }
    body[..digits].iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_publisher_bodies() {
        assert_eq!(parse_seq(b"0:"), Some(0));
        assert_eq!(parse_seq(b"42:xxxx"), Some(42));
        assert_eq!(parse_seq(b"7"), Some(7));
        assert_eq!(parse_seq(b"18446744073709551615:"), Some(u64::MAX));
    }

    #[test]
    fn ignores_other_bodies() {
        assert_eq!(parse_seq(b""), None);
        assert_eq!(parse_seq(b":1"), None);
        assert_eq!(parse_seq(b"12a:"), None);
        assert_eq!(parse_seq(b"hello"), None);
        assert_eq!(parse_seq(b"18446744073709551616:"), None);
    }

    #[test]
    fn classifies_in_order_gaps_and_dups() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(5), SeqEvent::InOrder);
        assert_eq!(t.observe(6), SeqEvent::InOrder);
        assert_eq!(t.observe(9), SeqEvent::Gap(2));
        assert_eq!(t.observe(9), SeqEvent::Dup);
        assert_eq!(t.observe(3), SeqEvent::Dup);
        assert_eq!(t.observe(10), SeqEvent::InOrder);
    }
}
