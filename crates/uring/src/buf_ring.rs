//! The provided buffer ring shared by every connection of one reactor.
//!
//! Owns two anonymous mappings: the ring of `count` [`BufRingEntry`] descriptors the kernel
//! picks receive buffers from (page aligned, as the kernel requires), and one contiguous slab
//! of `count * size` bytes holding the buffers themselves (pages are only touched when data
//! lands in them). Buffer ids are the kernel's 16-bit ids: buffer `bid` lives at
//! `slab + bid * size`.
//!
//! A buffer handed out by a completion is *lent* to the caller until it is recycled. Recycled
//! buffers are written to the ring immediately but the tail is published to the kernel in a
//! batch by [`BufRing::publish`], which the reactor calls right before every submit.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// The largest ring the kernel accepts.
pub(crate) const MAX_ENTRIES: u16 = 1 << 15;

/// An anonymous private read/write mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: anonymous mapping request without a fixed address; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(ptr.cast::<u8>())
            .map(|ptr| Mapping { ptr, len })
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping created by `Mapping::new` and unmapped only here.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast::<libc::c_void>(), self.len);
        }
    }
}

/// Ring descriptors plus buffer slab, with the bookkeeping of which buffers are lent out.
pub(crate) struct BufRing {
    ring: Mapping,
    slab: Mapping,
    count: u16,
    buf_size: u32,
    /// Tail as written locally (entries up to here are filled in).
    tail: u16,
    /// Tail as last made visible to the kernel.
    published_tail: u16,
    /// One bit per buffer id: set while the buffer is lent to the caller.
    lent: Vec<u64>,
}

impl BufRing {
    /// Maps a ring of `count` buffers of `buf_size` bytes, all of them given to the kernel.
    ///
    /// `count` must be a power of two no larger than [`MAX_ENTRIES`], `buf_size` non-zero.
    pub(crate) fn new(count: u16, buf_size: u32) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > MAX_ENTRIES || buf_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two <= 32768 and buffer size non-zero",
            ));
        }
        let ring_len = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        let slab_len = usize::from(count)
            .checked_mul(buf_size as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "buffer slab too large"))?;
        let mut buf_ring = BufRing {
            ring: Mapping::new(ring_len)?,
            slab: Mapping::new(slab_len)?,
            count,
            buf_size,
            tail: 0,
            published_tail: 0,
            lent: vec![0; usize::from(count).div_ceil(64)],
        };
        for bid in 0..count {
            buf_ring.push_entry(bid);
        }
        buf_ring.publish();
        Ok(buf_ring)
    }

    /// Address of the descriptor ring, for `IORING_REGISTER_PBUF_RING`.
    pub(crate) fn ring_addr(&self) -> u64 {
        self.ring.ptr.as_ptr() as u64
    }

    /// Number of ring entries (= number of buffers).
    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    /// Makes all recycled buffers visible to the kernel with one release store of the tail.
    pub(crate) fn publish(&mut self) {
        if self.tail == self.published_tail {
            return;
        }
        let base = self.ring.ptr.as_ptr().cast::<BufRingEntry>();
        // SAFETY: `base` is the page-aligned start of the ring, whose first entry is
        // initialised; `BufRingEntry::tail` returns its `resv` field, which the kernel reads
        // as the ring tail.
        let tail_ptr = unsafe { BufRingEntry::tail(base) }.cast_mut();
        // SAFETY: the tail is a naturally aligned u16 inside our live mapping; the kernel only
        // reads it, and all our other accesses to it go through this atomic.
        let tail = unsafe { AtomicU16::from_ptr(tail_ptr) };
        tail.store(self.tail, Ordering::Release);
        self.published_tail = self.tail;
    }

    /// Marks `bid` as handed to the caller by a completion. Returns false for an id outside the ring.
    pub(crate) fn lend(&mut self, bid: u16) -> bool {
        if bid >= self.count {
            return false;
        }
        self.lent[usize::from(bid / 64)] |= 1 << (bid % 64);
        true
    }

    fn is_lent(&self, bid: u16) -> bool {
        bid < self.count && self.lent[usize::from(bid / 64)] & (1 << (bid % 64)) != 0
    }

    /// Gives a lent buffer back to the kernel (visible after the next [`BufRing::publish`]).
    /// Ids that are not currently lent are ignored, so a double recycle cannot corrupt the ring.
    pub(crate) fn recycle(&mut self, bid: u16) {
        if !self.is_lent(bid) {
            return;
        }
        self.lent[usize::from(bid / 64)] &= !(1 << (bid % 64));
        self.push_entry(bid);
    }

    /// The first `len` bytes (at most the buffer size) of a lent buffer; empty if `bid` is not lent.
    pub(crate) fn buffer(&mut self, bid: u16, len: u32) -> &mut [u8] {
        if !self.is_lent(bid) {
            return &mut [];
        }
        let len = len.min(self.buf_size) as usize;
        let offset = usize::from(bid) * self.buf_size as usize;
        // SAFETY: `offset + len` lies inside the slab. A lent buffer is not in the ring, so the
        // kernel does not write it, and `&mut self` keeps the slice unique until it is recycled.
        unsafe { std::slice::from_raw_parts_mut(self.slab.ptr.as_ptr().add(offset), len) }
    }

    /// Number of buffers currently lent out.
    #[cfg(test)]
    pub(crate) fn lent_count(&self) -> u32 {
        self.lent.iter().map(|word| word.count_ones()).sum()
    }

    /// Bytes of heap owned outside the two mappings (for the no-per-connection-allocation test).
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.lent.capacity() * std::mem::size_of::<u64>()
    }

    fn push_entry(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.slab.ptr.as_ptr() as u64 + u64::from(bid) * u64::from(self.buf_size);
        // SAFETY: `index < count`, so the entry lies inside the ring mapping. The slot is free:
        // at most `count` buffers exist and this one was neither in the ring nor lent twice.
        let entry = unsafe { &mut *self.ring.ptr.as_ptr().cast::<BufRingEntry>().add(index) };
        entry.set_addr(addr);
        entry.set_len(self.buf_size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_sizes() {
        assert!(BufRing::new(3, 64).is_err());
        assert!(BufRing::new(0, 64).is_err());
        assert!(BufRing::new(4, 0).is_err());
    }

    #[test]
    fn ring_memory_is_page_aligned_and_filled() {
        let ring = BufRing::new(8, 100).unwrap();
        assert_eq!(ring.ring_addr() % 4096, 0);
        assert_eq!(ring.tail, 8);
        assert_eq!(ring.published_tail, 8);
        let base = ring.ring.ptr.as_ptr().cast::<BufRingEntry>();
        for i in 0..8u16 {
            // SAFETY: i < count, inside the mapping.
            let entry = unsafe { &*base.add(usize::from(i)) };
            assert_eq!(entry.bid(), i);
            assert_eq!(entry.len(), 100);
            assert_eq!(
                entry.addr(),
                ring.slab.ptr.as_ptr() as u64 + u64::from(i) * 100
            );
        }
    }

    #[test]
    fn only_lent_buffers_are_visible_and_recyclable() {
        let mut ring = BufRing::new(4, 16).unwrap();
        assert!(ring.buffer(1, 16).is_empty());
        assert!(!ring.lend(4));
        assert!(ring.lend(1));
        assert_eq!(ring.buffer(1, 100).len(), 16);
        assert_eq!(ring.buffer(1, 5).len(), 5);
        ring.recycle(1);
        assert_eq!(ring.tail, 5);
        ring.recycle(1);
        ring.recycle(u16::MAX);
        assert_eq!(ring.tail, 5, "double or bogus recycles are ignored");
        assert_eq!(ring.published_tail, 4);
        ring.publish();
        assert_eq!(ring.published_tail, 5);
        assert_eq!(ring.lent_count(), 0);
    }
}
