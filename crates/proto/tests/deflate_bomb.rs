//! A compressed "zip bomb" fails with TooBig while the heap stays near the limit: a
//! counting global allocator records the peak of live heap bytes while inflating (a
//! reallocation counts as the larger of its two sizes, as when it grows in place). This
//! file holds a single test so no other test allocates at the same time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ringcast_proto::{Decoder, OpCode, ProtocolError, Role, deflate_message, inflate_message};

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        if !new_ptr.is_null() {
            let live = LIVE.fetch_add(new_size, Ordering::SeqCst) + new_size;
            PEAK.fetch_max(live - layout.size(), Ordering::SeqCst);
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        new_ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak live heap bytes above the current level while running `f`.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let result = f();
    (result, PEAK.load(Ordering::SeqCst) - base)
}

/// Heap an inflater may use besides the output: zlib's state and its 32 KiB window.
const INFLATER_OVERHEAD: usize = 96 << 10;

#[test]
fn zip_bomb_never_allocates_past_the_limit() {
    let limit = 256 << 10;
    let bomb = deflate_message(&vec![0u8; 64 << 20], 15);
    assert!(bomb.len() < 128 << 10, "{}", bomb.len());

    let (result, growth) = peak_growth(|| inflate_message(&bomb, limit));
    assert_eq!(result, Err(ProtocolError::TooBig));
    eprintln!("inflate_message peak heap growth {growth}");
    assert!(
        growth <= limit + 1 + INFLATER_OVERHEAD,
        "peak heap growth {growth} for a limit of {limit}"
    );

    let mut frame = Vec::new();
    ringcast_proto::encode_compressed_frame(&mut frame, OpCode::Binary, &bomb, Some([1, 2, 3, 4]));
    let mut decoder = Decoder::new(Role::Server, limit);
    decoder.enable_deflate();
    let (result, growth) = peak_growth(|| decoder.feed(&mut frame, &mut |_| {}));
    assert_eq!(result, Err(ProtocolError::TooBig));
    assert!(
        growth <= limit + 1 + INFLATER_OVERHEAD,
        "decoder peak heap growth {growth} for a limit of {limit}"
    );
}
