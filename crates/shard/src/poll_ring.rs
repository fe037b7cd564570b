//! The last few messages of a channel, kept by its owner shard once long-poll clients
//! use the channel, so a client that re-polls with `since=<id>` gets what it missed.
//!
//! A message is kept as its long-poll JSON element, escaped once when it is kept; every
//! poll answer, on any shard, queues that same shared buffer instead of its own copy.

use base64::Engine;
use bytes::Bytes;
use std::collections::VecDeque;

/// One kept message, as its long-poll JSON element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The channel sequence number (the SSE/long-poll id).
    pub(crate) seq: u64,
    /// `,{"data":"...","id":n}` (binary: `,{"binary":true,"data":"<base64>","id":n}`):
    /// with the comma that separates it from the element before it.
    element: Bytes,
}

impl Kept {
    /// Encodes message `seq` once (binary as base64, text as UTF-8 with invalid
    /// sequences replaced).
    pub(crate) fn encode(seq: u64, payload: &[u8], binary: bool) -> Self {
        let room = if binary {
            payload.len() / 3 * 4 + 4
        } else {
            payload.len()
        };
        let mut out = Vec::with_capacity(room + 48);
        if binary {
            out.extend_from_slice(b",{\"binary\":true,\"data\":\"");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(payload)
                    .as_bytes(),
            );
            out.push(b'"');
        } else {
            out.extend_from_slice(b",{\"data\":");
            let text = String::from_utf8_lossy(payload);
            // Serializing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, text.as_ref());
        }
        out.extend_from_slice(format!(",\"id\":{seq}}}").as_bytes());
        Kept {
            seq,
            element: Bytes::from(out),
        }
    }

    /// The element as the first of a list (no comma), sharing the kept buffer.
    pub(crate) fn first(&self) -> Bytes {
        self.element.slice(1..)
    }

    /// The element after another one (with its comma), sharing the kept buffer.
    pub(crate) fn following(&self) -> Bytes {
        self.element.clone()
    }

    /// Bytes of [`Kept::following`] (one more than [`Kept::first`]).
    pub(crate) fn len(&self) -> usize {
        self.element.len()
    }
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
        Kept::encode(seq, seq.to_string().as_bytes(), false)
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

    #[test]
    fn elements_are_the_documented_json_shared_not_copied() {
        let text = Kept::encode(7, "a\"b\n\u{e9}".as_bytes(), false);
        let expected = "{\"data\":\"a\\\"b\\n\u{e9}\",\"id\":7}";
        assert_eq!(&text.first()[..], expected.as_bytes());
        let binary = Kept::encode(8, &[0xff, 0x00], true);
        assert_eq!(
            &binary.following()[..],
            br#",{"binary":true,"data":"/wA=","id":8}"#
        );
        assert_eq!(binary.len(), binary.following().len());
        assert_eq!(text.first().as_ptr(), text.following()[1..].as_ptr());
    }
}
