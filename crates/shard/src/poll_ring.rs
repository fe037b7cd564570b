//! The last few messages of a channel, kept by its owner shard once long-poll clients
//! use the channel, so a client that re-polls with `since=<id>` gets what it missed.

use bytes::Bytes;
use std::collections::VecDeque;

/// One kept message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The channel sequence number (the SSE/long-poll id).
    pub seq: u64,
    /// The message.
    pub payload: Bytes,
    /// Binary (not UTF-8) message.
    pub binary: bool,
}

/// A bounded ring of recent messages.
#[derive(Debug)]
pub(crate) struct PollRing {
    cap: usize,
    kept: VecDeque<Kept>,
}

impl PollRing {
    /// A ring keeping at most `cap` messages.
    pub(crate) fn new(cap: usize) -> Self {
        PollRing {
            cap: cap.max(1),
            kept: VecDeque::new(),
        }
    }

    /// Keeps a message, forgetting the oldest when full.
    pub(crate) fn push(&mut self, kept: Kept) {
        if self.kept.len() == self.cap {
            self.kept.pop_front();
        }
        self.kept.push_back(kept);
    }

    /// Messages with a sequence number above `since`.
    pub(crate) fn after(&self, since: u64) -> Vec<Kept> {
        self.kept
            .iter()
            .filter(|k| k.seq > since)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(seq: u64) -> Kept {
        Kept {
            seq,
            payload: Bytes::from(seq.to_string()),
            binary: false,
        }
    }

    #[test]
    fn keeps_the_newest_and_filters_by_since() {
        let mut ring = PollRing::new(3);
        for seq in 1..=5 {
            ring.push(kept(seq));
        }
        assert_eq!(ring.after(0), vec![kept(3), kept(4), kept(5)]);
        assert_eq!(ring.after(4), vec![kept(5)]);
        assert!(ring.after(5).is_empty());
    }
}
