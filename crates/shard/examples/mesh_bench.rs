//! The shard mesh microbenchmark (issue 13): what one delivery costs inside the shards —
//! publish → the channel's owner → every shard with subscribers → queued on each
//! subscriber and handed to the (here counting) send — for 1, 2, 4, 8 and 16 shards.
//!
//! All shards run on this one thread through their sans-IO API, messages between them
//! are moved in batches the way the reactor's turn does (each shard's outbox per
//! destination), and every send completes at once. No socket, no kernel, no cross-core
//! traffic: the figure is the shards' own work per delivery, so it shows whether that
//! work grows with the number of shards (it should not: O(1) per destination shard per
//! turn). Cross-core costs (cache lines, wakes) are measured by the end-to-end
//! benchmarks instead.
//!
//! Usage: `cargo run --release -p ringcast-shard --example mesh_bench [subscribers]
//! [publishes] [shard counts]` (default 10,000 subscribers, 200 publishes per channel,
//! shard counts `1,2,4,8,16`). Prints a
//! Markdown table: CPU ns per delivery (this thread's CPU time, so other load on the
//! box does not count) for 1 channel and for 100 channels.

mod common;

use common::thread_cpu_ns;
use ringcast_proto::{client_request, generate_key};
use ringcast_shard::{ConnId, Shard, ShardConfig, ShardMsg, owner_of};

/// One node of `n` shards driven on this thread.
struct Mesh {
    shards: Vec<Shard>,
    now: u64,
    sent_bytes: u64,
}

impl Mesh {
    fn new(n: u16) -> Mesh {
        let shards = (0..n)
            .map(|id| {
                let mut cfg = ShardConfig::single();
                cfg.id = id;
                cfg.shards = n;
                cfg.max_channels_per_conn = 1;
                Shard::new(cfg)
            })
            .collect();
        Mesh {
            shards,
            now: 1,
            sent_bytes: 0,
        }
    }

    /// A WebSocket subscriber of `channel` on `shard`.
    fn subscribe(&mut self, shard: usize, fd: i32, channel: &str) -> ConnId {
        let id = self.shards[shard].on_accept(fd, None, self.now);
        let key = generate_key(fd as u64);
        let mut request = client_request("localhost", &format!("/{channel}"), &key);
        self.shards[shard].on_recv(id, &mut request, self.now);
        self.settle();
        id
    }

    /// Moves every outbox's messages to their shards and completes every send, until
    /// nothing moves: one batch per (source, destination) pair per round, as a reactor
    /// turn drains its mailbox.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for from in 0..self.shards.len() {
                let batches: Vec<(usize, Vec<ShardMsg>)> = self.shards[from]
                    .outbox()
                    .iter_mut()
                    .enumerate()
                    .filter(|(_, batch)| !batch.is_empty())
                    .map(|(to, batch)| (to, std::mem::take(batch)))
                    .collect();
                for (to, batch) in batches {
                    moved = true;
                    for msg in batch {
                        self.shards[to].on_message(msg, self.now);
                    }
                }
                while let Some((id, _fd)) = self.shards[from].next_send() {
                    moved = true;
                    let mut bytes = 0;
                    self.shards[from].begin_send(id, &mut |chunk| bytes += chunk.len());
                    self.sent_bytes += bytes as u64;
                    self.shards[from].on_send_done(id, Ok(bytes));
                }
                self.shards[from].take_actions().for_each(drop);
                self.shards[from].take_broker_cmds().for_each(drop);
            }
            if !moved {
                return;
            }
        }
    }

    fn publish(&mut self, channel: &str, payload: &bytes::Bytes) {
        let owner = owner_of(channel, self.shards.len());
        self.shards[owner].on_message(
            ShardMsg::Publish {
                channel: channel.into(),
                payload: payload.clone(),
                binary: false,
                position: None,
            },
            self.now,
        );
    }
}

/// ns per delivery with `n` shards, `subscribers` spread evenly over shards and over
/// `channels` channels, `publishes` messages per channel (64 bytes each).
fn run(n: u16, channels: usize, subscribers: usize, publishes: usize) -> f64 {
    let mut mesh = Mesh::new(n);
    let names: Vec<String> = (0..channels).map(|c| format!("ch{c}")).collect();
    for i in 0..subscribers {
        mesh.subscribe(i % usize::from(n), 1_000 + i as i32, &names[i % channels]);
    }
    let payload = bytes::Bytes::from(vec![b'x'; 64]);
    // Warm up (allocations of queues, channel entries) before timing.
    for name in &names {
        mesh.publish(name, &payload);
    }
    mesh.settle();
    let sent_before = mesh.sent_bytes;
    let started = thread_cpu_ns();
    for _ in 0..publishes {
        for name in &names {
            mesh.publish(name, &payload);
        }
        mesh.settle();
    }
    let elapsed = thread_cpu_ns() - started;
    let deliveries = (publishes * subscribers) as f64;
    assert!(
        mesh.sent_bytes - sent_before >= (deliveries as u64) * 66,
        "every delivery was sent"
    );
    elapsed as f64 / deliveries
}

fn main() {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let publishes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let counts: Vec<u16> = match args.next() {
        Some(list) => list.split(',').filter_map(|n| n.parse().ok()).collect(),
        None => vec![1, 2, 4, 8, 16],
    };
    // Keep freed memory in the process and fault it in once, with a throwaway run, so
    // that no configuration pays the kernel's page faults (they count as this thread's
    // CPU time) and the first one is not penalised.
    // SAFETY: mallopt only sets allocator tunables.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    run(1, 100, subscribers, 2);
    println!("| shards | ns per delivery, 1 channel | ns per delivery, 100 channels |");
    println!("|---:|---:|---:|");
    // The best of three runs each: the first run of a process also pays for faulting its
    // memory in.
    let best = |n, channels| {
        (0..3)
            .map(|_| run(n, channels, subscribers, publishes))
            .fold(f64::INFINITY, f64::min)
    };
    for n in counts {
        let one = best(n, 1);
        let hundred = best(n, 100);
        println!("| {n} | {one:.1} | {hundred:.1} |");
    }
}
