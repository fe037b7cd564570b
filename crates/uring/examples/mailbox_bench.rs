//! What one message between shards costs, for the arithmetic of "Scaling past this box"
//! (docs/ARCHITECTURE.md): a bounded flume lane like the mesh's (2,048 messages of a
//! `ShardMsg`'s size) between two threads, the sender's and the receiver's CPU per
//! message, and one eventfd write (the wake of a sleeping shard, `Waker::wake`). CPU is
//! each thread's own CPU time. Two patterns: the receiver polling the lane in a tight
//! loop (every send meets the receiver on the lane's lock: the worst case), and the way
//! shards use it — the sender flushes a burst of `BURST` messages per loop turn, the
//! receiver drains everything waiting once per turn.
//!
//! Usage: `cargo run --release -p ringcast-uring --example mailbox_bench [messages]`
//! (default 2,000,000).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

mod common;
use common::thread_cpu_ns;

/// A message of about a `ShardMsg::Deliver`'s size (96 bytes).
#[derive(Clone, Copy)]
struct Message([u64; 12]);

/// Messages a sender flushes per turn in the batched pattern.
const BURST: u64 = 64;

/// (sender ns, receiver ns) per message through a bounded lane; `turns`: the batched
/// pattern (bursts, and the receiver drains then pauses ~20 µs), else a tight loop.
fn lane(messages: u64, turns: bool) -> (f64, f64) {
    let (tx, rx) = flume::bounded::<Message>(2_048);
    let start = Arc::new(Barrier::new(2));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (start, done) = (Arc::clone(&start), Arc::clone(&done));
        std::thread::spawn(move || {
            start.wait();
            let began = thread_cpu_ns();
            let mut got = 0u64;
            let mut sum = 0u64;
            while got < messages {
                match rx.try_recv() {
                    Ok(m) => {
                        sum = sum.wrapping_add(m.0[0]);
                        got += 1;
                    }
                    Err(_) if done.load(Ordering::Acquire) && rx.is_empty() => break,
                    Err(_) if turns => {
                        std::thread::sleep(std::time::Duration::from_micros(20));
                    }
                    Err(_) => std::hint::spin_loop(),
                }
            }
            std::hint::black_box(sum);
            (thread_cpu_ns() - began, got)
        })
    };
    start.wait();
    let began = thread_cpu_ns();
    let mut sent = 0u64;
    while sent < messages {
        if tx.try_send(Message([sent; 12])).is_ok() {
            sent += 1;
            if turns && sent.is_multiple_of(BURST) {
                std::thread::yield_now();
            }
        } else {
            std::hint::spin_loop();
        }
    }
    let sender_ns = thread_cpu_ns() - began;
    done.store(true, Ordering::Release);
    let (receiver_ns, got) = receiver.join().expect("receiver");
    // The receiver's spinning on an empty lane is not message work: count its time per
    // message anyway, as an upper bound.
    (
        sender_ns as f64 / messages as f64,
        receiver_ns as f64 / got.max(1) as f64,
    )
}

/// ns per eventfd write (a wake), nobody reading.
fn eventfd_write(writes: u64) -> f64 {
    // SAFETY: eventfd returns a descriptor or -1; closed below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    assert!(fd >= 0, "eventfd");
    let one = 1u64.to_ne_bytes();
    let began = thread_cpu_ns();
    for _ in 0..writes {
        // SAFETY: writes 8 bytes from a live buffer to our eventfd.
        unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
    }
    let ns = (thread_cpu_ns() - began) as f64 / writes as f64;
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    ns
}

fn main() {
    let messages: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let best = |turns| {
        (0..3)
            .map(|_| lane(messages, turns))
            .fold((f64::INFINITY, f64::INFINITY), |(s, r), (s2, r2)| {
                (s.min(s2), r.min(r2))
            })
    };
    let (tight_send, tight_recv) = best(false);
    let (turn_send, turn_recv) = best(true);
    let wake = eventfd_write(messages / 10);
    println!("| operation | CPU ns |");
    println!("|---|---:|");
    println!("| flume send per message, receiver polling in a tight loop | {tight_send:.1} |");
    println!("| flume try_recv per message, tight loop (spinning included) | {tight_recv:.1} |");
    println!(
        "| flume send per message, bursts of {BURST}, receiver draining per turn | {turn_send:.1} |"
    );
    println!("| flume try_recv per message, draining per turn | {turn_recv:.1} |");
    println!("| eventfd write (one wake, nobody waiting) | {wake:.1} |");
}
