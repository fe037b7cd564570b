//! The kernel's floor under a delivery (issue 13): what sending one small WebSocket frame
//! on its own costs on loopback TCP with no gateway at all. One thread writes one
//! 66-byte frame (a 64-byte text message and its 2-byte header) per `write(2)` to each of
//! N accepted sockets (TCP_NODELAY, as the shards set it) in turn, round after round; a
//! second thread reads each frame back from the client ends with one `read(2)` each, and
//! the writer keeps at most `window` frames outstanding, as wsload's paced publisher does,
//! so frames do not pile up and coalesce in the receive queues. On loopback the writer's
//! `write` also runs the receiving side's TCP input (softirq in the sender's context), so
//! its CPU per frame is the floor under a gateway's server CPU per delivery measured the
//! same way; the reader's is the floor under the client's.
//!
//! Usage: `cargo run --release -p ringcast-uring --example tcp_floor [sockets] [rounds]
//! [window]` (default 5,000 sockets, 200 rounds, 50,000 frames outstanding). Each socket
//! pair takes two descriptors: stay under the process limit (~20,000 here).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

mod common;
use common::thread_cpu_ns;

/// A 64-byte text message's frame: FIN + text opcode, unmasked length 64, payload.
const FRAME: [u8; 66] = {
    let mut frame = [b'x'; 66];
    frame[0] = 0x81;
    frame[1] = 64;
    frame
};

fn arg(index: usize, default: u64) -> u64 {
    std::env::args()
        .nth(index)
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() -> std::io::Result<()> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let sockets = arg(1, 5_000) as usize;
    let rounds = arg(2, 200);
    let window = arg(3, 50_000);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut clients = Vec::with_capacity(sockets);
    let mut servers = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let client = TcpStream::connect(addr)?;
        let (server, _) = listener.accept()?;
        server.set_nodelay(true)?;
        clients.push(client);
        servers.push(server);
    }
    let frames = sockets as u64 * rounds;
    let received = Arc::new(AtomicU64::new(0));
    let wall = Instant::now();
    let reader = {
        let received = Arc::clone(&received);
        std::thread::spawn(move || -> std::io::Result<u128> {
            let start = thread_cpu_ns();
            let mut frame = [0u8; FRAME.len()];
            for _ in 0..rounds {
                for client in &mut clients {
                    client.read_exact(&mut frame)?;
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(thread_cpu_ns() - start)
        })
    };
    let start = thread_cpu_ns();
    let mut sent = 0u64;
    for _ in 0..rounds {
        for server in &mut servers {
            while sent - received.load(Ordering::Relaxed) >= window {
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
            server.write_all(&FRAME)?;
            sent += 1;
        }
    }
    let writer_ns = thread_cpu_ns() - start;
    let reader_ns = reader.join().expect("the reader thread panicked")?;
    let seconds = wall.elapsed().as_secs_f64();
    println!(
        "{{\"sockets\": {sockets}, \"frames\": {frames}, \"window\": {window}, \
         \"frames_per_s\": {:.0}, \"writer_ns_per_frame\": {:.0}, \
         \"reader_ns_per_frame\": {:.0}, \"load_at_start\": \"{}\"}}",
        frames as f64 / seconds,
        writer_ns as f64 / frames as f64,
        reader_ns as f64 / frames as f64,
        load.join(" "),
    );
    Ok(())
}
