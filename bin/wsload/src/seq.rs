//! Per-connection sequence check: from the first number seen, each next one must be exactly
//! one more. Eight bytes per connection (`u64::MAX` means "nothing seen yet").

/// What one observed sequence number means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// First number seen, or exactly one more than the last.
    InOrder,
    /// Numbers were skipped; how many.
    Gap(u64),
    /// Equal to the last one seen.
    Dup,
    /// Smaller than the last one seen (arrived after a later one).
    Late,
}

/// Tracks the sequence numbers one connection received.
#[derive(Debug, Clone, Copy)]
pub struct SeqTracker {
    /// Largest number seen so far, `u64::MAX` before the first.
    last: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self { last: u64::MAX }
    }
}

impl SeqTracker {
    /// Records `seq` and classifies it. `u64::MAX` itself is treated as a duplicate.
    pub fn observe(&mut self, seq: u64) -> SeqEvent {
        if self.last == u64::MAX {
            self.last = seq;
            return SeqEvent::InOrder;
        }
        match seq.cmp(&self.last) {
            std::cmp::Ordering::Equal => SeqEvent::Dup,
            std::cmp::Ordering::Less => SeqEvent::Late,
            std::cmp::Ordering::Greater => {
                let skipped = seq - self.last - 1;
                self.last = seq;
                if skipped == 0 {
                    SeqEvent::InOrder
                } else {
                    SeqEvent::Gap(skipped)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_in_order_gaps_dups_and_late() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(5), SeqEvent::InOrder);
        assert_eq!(t.observe(6), SeqEvent::InOrder);
        assert_eq!(t.observe(9), SeqEvent::Gap(2));
        assert_eq!(t.observe(9), SeqEvent::Dup);
        assert_eq!(t.observe(3), SeqEvent::Late);
        assert_eq!(t.observe(10), SeqEvent::InOrder);
        assert_eq!(std::mem::size_of::<SeqTracker>(), 8);
    }

    #[test]
    fn starts_anywhere_including_zero() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(0), SeqEvent::InOrder);
        assert_eq!(t.observe(0), SeqEvent::Dup);
        assert_eq!(t.observe(1), SeqEvent::InOrder);
    }
}
