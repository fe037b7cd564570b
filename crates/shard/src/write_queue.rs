//! A connection's outgoing frames: shared `Bytes` handles queued in order, sent with one
//! vectored send at a time, and freed (with the queue's own storage) once written.

use bytes::Bytes;
use std::collections::VecDeque;

/// Most chunks handed to one vectored send.
pub const MAX_IOVECS: usize = 64;

/// Queued frames of one connection. Holds no allocation while empty.
#[derive(Debug, Default)]
pub struct WriteQueue {
    chunks: VecDeque<Bytes>,
    /// Bytes of the front chunk already sent.
    head_offset: u32,
    /// Bytes queued and not yet sent.
    bytes: u32,
}

impl WriteQueue {
    /// Appends a frame.
    pub fn push(&mut self, frame: Bytes) {
        self.bytes = self.bytes.saturating_add(frame.len() as u32);
        self.chunks.push_back(frame);
    }

    /// Whether nothing is waiting to be sent.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes waiting to be sent.
    pub fn queued_bytes(&self) -> u32 {
        self.bytes
    }

    /// Calls `chunk` with each unsent slice, oldest first, at most [`MAX_IOVECS`].
    /// The slices stay valid until [`WriteQueue::advance`] consumes them.
    pub fn for_each_chunk(&self, mut chunk: impl FnMut(&[u8])) {
        for (i, frame) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
            let start = if i == 0 { self.head_offset as usize } else { 0 };
            chunk(&frame[start..]);
        }
    }

    /// Marks `written` bytes as sent, dropping finished frames; frees the queue's
    /// storage when it becomes empty so an idle connection holds nothing.
    pub fn advance(&mut self, mut written: usize) {
        self.bytes = self.bytes.saturating_sub(written as u32);
        while let Some(front) = self.chunks.front() {
            let left = front.len() - self.head_offset as usize;
            if written < left {
                self.head_offset += written as u32;
                return;
            }
            written -= left;
            self.head_offset = 0;
            self.chunks.pop_front();
        }
        self.chunks = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(queue: &WriteQueue) -> Vec<u8> {
        let mut out = Vec::new();
        queue.for_each_chunk(|c| out.extend_from_slice(c));
        out
    }

    #[test]
    fn partial_and_full_advances() {
        let mut q = WriteQueue::default();
        q.push(Bytes::from_static(b"hello"));
        q.push(Bytes::from_static(b" world"));
        assert_eq!(q.queued_bytes(), 11);
        q.advance(3);
        assert_eq!(pending(&q), b"lo world");
        q.advance(4);
        assert_eq!(pending(&q), b"orld");
        assert_eq!(q.queued_bytes(), 4);
        q.advance(4);
        assert!(q.is_empty());
        assert_eq!(q.queued_bytes(), 0);
        assert_eq!(q.chunks.capacity(), 0, "storage freed when empty");
    }

    #[test]
    fn at_most_max_iovecs_per_send() {
        let mut q = WriteQueue::default();
        for _ in 0..100 {
            q.push(Bytes::from_static(b"x"));
        }
        let mut n = 0;
        q.for_each_chunk(|_| n += 1);
        assert_eq!(n, MAX_IOVECS);
    }
}
