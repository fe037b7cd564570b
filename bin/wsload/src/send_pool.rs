//! Reused send buffers: an idle connection owns none; a connection that sends (handshake
//! request, pongs, echo messages, close) borrows one and gives it back when the send is done.

/// Buffers kept for reuse at most.
const MAX_POOLED: usize = 1024;
/// Buffers larger than this are freed instead of pooled.
const MAX_POOLED_CAPACITY: usize = 64 << 10;

/// A free list of byte buffers.
#[derive(Debug, Default)]
pub struct SendPool {
    free: Vec<Vec<u8>>,
}

impl SendPool {
    /// An empty buffer, reused when possible.
    pub fn take(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_default()
    }

    /// Gives a buffer back (cleared; dropped when the pool is full or it is large).
    pub fn give(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0
            || buf.capacity() > MAX_POOLED_CAPACITY
            || self.free.len() >= MAX_POOLED
        {
            return;
        }
        buf.clear();
        self.free.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_cleared_buffers_and_drops_big_ones() {
        let mut pool = SendPool::default();
        let mut a = pool.take();
        a.extend_from_slice(b"abc");
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take();
        assert!(b.is_empty());
        assert_eq!(b.as_ptr(), ptr);
        pool.give(Vec::with_capacity(MAX_POOLED_CAPACITY + 1));
        pool.give(Vec::new());
        assert!(pool.free.is_empty());
    }
}
