//! Free TCP ports on loopback for one test: single ports and runs of consecutive ones.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

/// Each test process starts at a different base so parallel test binaries rarely collide.
fn next_candidate() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 500) as u16 * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let port = NEXT.fetch_add(1, Ordering::SeqCst);
    if port >= 32_000 {
        NEXT.store(20_000, Ordering::SeqCst);
    }
    port
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `n` consecutive free ports (below the ephemeral range, so clients never take them).
pub fn free_range(n: u16) -> u16 {
    for _ in 0..2_000 {
        let first = next_candidate();
        if (first..first + n).all(bindable) {
            for _ in 1..n {
                next_candidate();
            }
            return first;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// One free port.
pub fn free_port() -> u16 {
    free_range(1)
}
