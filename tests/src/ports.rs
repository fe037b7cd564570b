//! Free TCP ports on loopback for one test: single ports and runs of consecutive ones.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

/// Claims `n` consecutive candidate ports at once, so two threads of one test process
/// never get overlapping runs. Each test process starts at a different base so parallel
/// test binaries rarely collide.
fn claim(n: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 500) as u16 * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let first = NEXT.fetch_add(n, Ordering::SeqCst);
    if first >= 32_000 {
        NEXT.store(20_000, Ordering::SeqCst);
    }
    first
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `n` consecutive free ports (below the ephemeral range, so clients never take them).
pub fn free_range(n: u16) -> u16 {
    for _ in 0..2_000 {
        let first = claim(n);
        if first < 32_000 && (first..first + n).all(bindable) {
            return first;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// One free port.
pub fn free_port() -> u16 {
    free_range(1)
}
