//! The provided buffer ring shared by every connection of one reactor.
//!
//! Owns two anonymous mappings: the ring of `count` [`RingEntry`] descriptors the kernel
//! picks receive buffers from (page aligned, as the kernel requires), and one contiguous slab
//! of `count * size` bytes holding the buffers themselves (pages are only touched when data
//! lands in them). Buffer ids are the kernel's 16-bit ids: buffer `bid` lives at
//! `slab + bid * size`.
//!
//! A buffer handed out by a completion is *lent* to the caller until it is recycled. Recycled
//! buffers are written to the ring immediately but the tail is published to the kernel in a
//! batch by [`BufRing::publish`], which the reactor calls right before every submit.
//!
//! Concurrency with the kernel: the ring tail is the `resv` field of entry 0, which the kernel
//! reads at any time while the ring is registered. So no Rust reference ever covers a ring
//! entry: fields are written through raw field pointers ([`write_entry`]) and the tail only
//! through an atomic with release ordering ([`store_tail`]), which orders the entry writes
//! before the kernel's acquire load of the tail.
//!
//! Miri: the reactor tests need io_uring syscalls and cannot run under Miri, but the entry
//! arithmetic and the tail publication can. `cargo +nightly miri test -p ringcast-uring
//! buf_ring` runs this module's tests, including one where a thread plays the kernel and
//! reads the ring while it is filled, so Miri's data race detector checks the ordering (a
//! `&mut` over entry 0 is reported there as a retag racing with the tail load).

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// The kernel's `struct io_uring_buf`. Spelled out here (rather than going through
/// [`BufRingEntry`]'s `&mut self` setters) so each field can be written through its own raw
/// pointer; the `resv` field of entry 0 is the ring tail.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<RingEntry>() == std::mem::size_of::<BufRingEntry>());
const _: () = assert!(std::mem::align_of::<RingEntry>() == std::mem::align_of::<BufRingEntry>());
const _: () = assert!(std::mem::offset_of!(RingEntry, resv) == 14);

/// Writes buffer `bid` at `addr` of `len` bytes into entry `index` of the ring at `base`.
///
/// Only the entry's `addr`, `len` and `bid` bytes are written, never `resv`, so writing
/// entry 0 does not touch the tail the kernel may be reading.
///
/// # Safety
/// `base` must point to a live, writable ring of more than `index` entries, and entry
/// `index` must not be one the kernel may read (it is past the published tail).
unsafe fn write_entry(base: NonNull<RingEntry>, index: usize, addr: u64, len: u32, bid: u16) {
    // SAFETY: in bounds per the caller's contract; raw field pointers create no reference, so
    // nothing asserts exclusive access to the `resv` bytes the kernel reads.
    unsafe {
        let entry = base.as_ptr().add(index);
        std::ptr::addr_of_mut!((*entry).addr).write(addr);
        std::ptr::addr_of_mut!((*entry).len).write(len);
        std::ptr::addr_of_mut!((*entry).bid).write(bid);
    }
}

/// Publishes `tail` to the kernel: every entry written before is visible to a reader that
/// loads the tail with acquire ordering and sees this value.
///
/// # Safety
/// `base` must point to the live first entry of a ring whose tail is only ever accessed
/// atomically.
unsafe fn store_tail(base: NonNull<RingEntry>, tail: u16) {
    // SAFETY: `resv` of entry 0 is a naturally aligned u16 inside the live ring; all accesses
    // to it (ours and the kernel's) are atomic.
    let tail_atomic = unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*base.as_ptr()).resv)) };
    tail_atomic.store(tail, Ordering::Release);
}

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
        let ring_len = usize::from(count) * std::mem::size_of::<RingEntry>();
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
        // SAFETY: the ring mapping is live for `self`'s lifetime and its tail is only
        // accessed through `store_tail` (and the kernel's atomic loads).
        unsafe { store_tail(self.entries(), self.tail) };
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

    /// The first ring entry.
    fn entries(&self) -> NonNull<RingEntry> {
        self.ring.ptr.cast::<RingEntry>()
    }

    fn push_entry(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.slab.ptr.as_ptr() as u64 + u64::from(bid) * u64::from(self.buf_size);
        // SAFETY: `index < count`, so the entry lies inside the ring mapping. The slot is past
        // the published tail and free: at most `count` buffers exist and this one was neither
        // in the ring nor lent twice.
        unsafe { write_entry(self.entries(), index, addr, self.buf_size, bid) };
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

    /// Reads entry `index` field by field, as the kernel does: no reference to the entry.
    fn read_entry(base: NonNull<RingEntry>, index: usize) -> (u64, u32, u16) {
        // SAFETY: every caller passes an index inside its live ring.
        unsafe {
            let entry = base.as_ptr().add(index);
            (
                std::ptr::addr_of!((*entry).addr).read(),
                std::ptr::addr_of!((*entry).len).read(),
                std::ptr::addr_of!((*entry).bid).read(),
            )
        }
    }

    /// The tail as the kernel reads it.
    fn load_tail(base: NonNull<RingEntry>) -> u16 {
        // SAFETY: entry 0 is live for the caller's ring; its `resv` is only accessed atomically.
        unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*base.as_ptr()).resv)) }
            .load(Ordering::Acquire)
    }

    /// A zeroed ring on the plain heap (no mmap), so the tests using it also run under Miri.
    fn heap_ring(count: usize) -> Vec<RingEntry> {
        (0..count)
            .map(|_| RingEntry {
                addr: 0,
                len: 0,
                bid: 0,
                resv: 0,
            })
            .collect()
    }

    /// The ring pointer handed to a thread that plays the kernel.
    struct SharedRing(NonNull<RingEntry>);

    // SAFETY: the test threads only access the ring through raw field pointers and the atomic
    // tail, exactly like the kernel; the owning vector outlives both threads.
    unsafe impl Send for SharedRing {}

    #[test]
    fn entries_are_written_field_by_field_and_the_tail_is_entry_zeros_resv() {
        let mut ring = heap_ring(4);
        let base = NonNull::new(ring.as_mut_ptr()).unwrap();
        for index in 0..4u16 {
            // SAFETY: index < 4 and no reader exists yet.
            unsafe {
                write_entry(
                    base,
                    usize::from(index),
                    0x1000 * u64::from(index),
                    64,
                    index,
                )
            };
        }
        // SAFETY: the tail of this ring is only accessed atomically.
        unsafe { store_tail(base, 4) };
        for index in 0..4u16 {
            assert_eq!(
                read_entry(base, usize::from(index)),
                (0x1000 * u64::from(index), 64, index)
            );
        }
        assert_eq!(load_tail(base), 4);
        // SAFETY: `base` is the first entry of the ring.
        let kernel_tail = unsafe { BufRingEntry::tail(base.as_ptr().cast::<BufRingEntry>()) };
        // SAFETY: entry 0 is live.
        let our_tail = unsafe { std::ptr::addr_of!((*base.as_ptr()).resv) };
        assert_eq!(kernel_tail, our_tail, "the tail is entry 0's resv field");
        for index in 1..4 {
            // SAFETY: index < 4; nobody else accesses the ring now.
            let resv = unsafe { std::ptr::addr_of!((*base.as_ptr().add(index)).resv).read() };
            assert_eq!(resv, 0, "writing entry {index} left its resv alone");
        }
        drop(ring);
    }

    /// One thread fills the ring one entry at a time while another loads the tail and reads
    /// every entry below it, as the kernel does. Under Miri this is a data race check: an
    /// entry written after its tail was published, or a reference covering entry 0 while
    /// the reader loads the tail, is reported.
    #[test]
    fn a_concurrent_reader_sees_complete_entries_below_the_tail() {
        const COUNT: u16 = 8;
        let mut ring = heap_ring(usize::from(COUNT));
        let base = NonNull::new(ring.as_mut_ptr()).unwrap();
        let shared = SharedRing(base);
        let kernel = std::thread::spawn(move || {
            let shared = shared;
            let base = shared.0;
            let mut seen = 0u16;
            for _ in 0..1_000_000 {
                let tail = load_tail(base);
                while seen < tail {
                    let index = usize::from(seen);
                    assert_eq!(read_entry(base, index), (u64::from(seen) << 12, 512, seen));
                    seen += 1;
                }
                if seen == COUNT {
                    break;
                }
                std::thread::yield_now();
            }
            seen
        });
        for index in 0..COUNT {
            // SAFETY: entry `index` is past the published tail, so the reader does not read it.
            unsafe { write_entry(base, usize::from(index), u64::from(index) << 12, 512, index) };
            // SAFETY: the tail of this ring is only accessed atomically.
            unsafe { store_tail(base, index + 1) };
        }
        assert_eq!(kernel.join().unwrap(), COUNT);
        drop(ring);
    }

    #[test]
    fn ring_memory_is_page_aligned_and_filled() {
        let ring = BufRing::new(8, 100).unwrap();
        assert_eq!(ring.ring_addr() % 4096, 0);
        assert_eq!(ring.tail, 8);
        assert_eq!(ring.published_tail, 8);
        assert_eq!(load_tail(ring.entries()), 8);
        for i in 0..8u16 {
            assert_eq!(
                read_entry(ring.entries(), usize::from(i)),
                (ring.slab.ptr.as_ptr() as u64 + u64::from(i) * 100, 100, i)
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
