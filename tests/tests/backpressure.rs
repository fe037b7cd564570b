//! Every queue between a publish and the shards is bounded (issue 11 B7): a burst of
//! publishes, as fast as four pipelined keep-alive connections send them, at a node whose
//! shard 0 is slow (the hidden `--slow-shard-us` failpoint: it sleeps per inbox message)
//! keeps the node's memory bounded; the publishes the owner shard had no room for are
//! answered `503 {"error":"overloaded"}` at once; and every publish answered 202 reaches
//! every subscriber of its channel. One channel is owned by the slow shard (its publish
//! inbox fills) and one by the other (its fan-out to the slow shard fills the mesh lane and
//! holds back its own publishes).
//!
//! The issue asks for 1M publishes; a debug build of the gateway's admin API on a shared
//! 2-core host answers about 1,500 per second, so the test sends 40,000 (13× the slow
//! shard's queues, 3× what it handles meanwhile at 2 ms per message) to stay within a
//! minute.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::http_pipeline::Pipeline;
use ringcast_tests::metrics::sum_where;
use ringcast_tests::ws_client::{connect, next_message};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Publishes in the burst.
const MESSAGES: usize = 40_000;
/// Bytes per published message.
const PAYLOAD: usize = 2048;
/// Keep-alive connections sending the burst.
const PUBLISHERS: usize = 4;
/// Requests per pipelined write.
const DEPTH: usize = 64;
/// Channels: `slow` is owned by shard 0 (fnv1a % 2 == 0), `fast` by shard 1.
const CHANNELS: [&str; 2] = ["slow", "fast"];
/// Subscribers per channel (the kernel spreads them over both shards).
const SUBSCRIBERS: usize = 2;
/// What the node's RSS may grow by during the burst: the documented bound of the shard
/// queues for 2 KiB messages (publish lanes 2 × 1,024 and mesh lanes 2 × 2,048 entries,
/// one turn's publishes per peer in an owner's outbox: about 12 MiB), the subscribers'
/// write queues (4 × 1 MiB) and allocator slack.
const RSS_GROWTH_BOUND: u64 = 32 << 20;
/// The marker that ends a subscriber's count.
const END: &str = "end";

/// Reads `channel` until [`END`]; returns how many other messages arrived.
fn subscribe(gateway: &Gateway, channel: &'static str) -> JoinHandle<u64> {
    let mut ws = connect(gateway.ws_addr(), &format!("/{channel}"));
    std::thread::spawn(move || {
        let mut received = 0;
        loop {
            match next_message(&mut ws, Duration::from_secs(60)) {
                Ok(Some(Message::Text(text))) if text.as_str() == END => return received,
                Ok(Some(Message::Text(_))) => received += 1,
                Ok(Some(Message::Close(frame))) => {
                    panic!("{channel}: closed ({frame:?}) after {received}")
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("{channel}: no message for 60 s after {received}"),
                Err(err) => panic!("{channel}: {err} after {received}"),
            }
        }
    })
}

/// Counts of one publisher connection.
#[derive(Default)]
struct Tally {
    accepted: [u64; 2],
    refused: u64,
}

/// Sends `count` publishes alternating over [`CHANNELS`], [`DEPTH`] per write.
fn publish_burst(gateway: &Gateway, count: usize) -> JoinHandle<Tally> {
    let admin = gateway.admin;
    std::thread::spawn(move || {
        let mut pipeline = Pipeline::connect(admin).expect("admin connection");
        let mut tally = Tally::default();
        let body = vec![b'p'; PAYLOAD];
        let mut sent = 0;
        while sent < count {
            let batch: Vec<(String, Vec<u8>)> = (sent..(sent + DEPTH).min(count))
                .map(|i| (format!("/publish/{}", CHANNELS[i % 2]), body.clone()))
                .collect();
            let answers = pipeline.post_all(&batch).expect("pipelined publishes");
            for (i, answer) in (sent..).zip(&answers) {
                match answer.status {
                    202 => tally.accepted[i % 2] += 1,
                    503 => {
                        assert_eq!(answer.body, r#"{"error":"overloaded"}"#);
                        tally.refused += 1;
                    }
                    other => panic!("publish answered {other}: {}", answer.body),
                }
            }
            sent += batch.len();
        }
        tally
    })
}

/// Samples the process's RSS every 20 ms until `stop`; returns the peak.
fn sample_peak_rss(gateway: &Gateway, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    let pid = gateway.pid();
    let peak = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let rss = ringcast_tests::proc_stats::rss_bytes(pid);
            peak.fetch_max(rss, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak.load(Ordering::SeqCst)
    })
}

#[test]
fn a_burst_at_a_slow_shard_is_refused_with_503_not_buffered() {
    let gateway = Gateway::start(1, &["--slow-shard-us", "2000"]);
    let subscribers: Vec<(usize, JoinHandle<u64>)> = (0..SUBSCRIBERS)
        .flat_map(|_| [0, 1])
        .map(|c| (c, subscribe(&gateway, CHANNELS[c])))
        .collect();
    gateway.wait_metric("ringcast_subscriptions", 10, |n| {
        n == subscribers.len() as f64
    });
    let before = gateway.rss_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak_rss(&gateway, stop.clone());

    let started = Instant::now();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|_| publish_burst(&gateway, MESSAGES / PUBLISHERS))
        .collect();
    let mut accepted = [0u64; 2];
    let mut refused = 0;
    for publisher in publishers {
        let tally = publisher.join().expect("publisher");
        accepted[0] += tally.accepted[0];
        accepted[1] += tally.accepted[1];
        refused += tally.refused;
    }
    let burst = started.elapsed();

    let mut end_refused = 0;
    for channel in CHANNELS {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match gateway.publish(channel, END.as_bytes()) {
                202 => break,
                503 => end_refused += 1,
                other => panic!("{channel}: end marker answered {other}"),
            }
            assert!(
                Instant::now() < deadline,
                "{channel}: end marker never accepted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for (channel, subscriber) in subscribers {
        let received = subscriber.join().expect("subscriber");
        assert_eq!(
            received, accepted[channel],
            "{}: every 202 is delivered, exactly once",
            CHANNELS[channel]
        );
    }
    stop.store(true, Ordering::SeqCst);
    let peak = sampler.join().expect("sampler");
    let grown = peak.saturating_sub(before);
    println!(
        "{MESSAGES} publishes in {burst:?}: {} + {} accepted, {refused} refused (503); \
         RSS {before} B before, peak {peak} B (+{grown} B)",
        accepted[0], accepted[1]
    );
    assert_eq!(
        accepted[0] + accepted[1] + refused,
        MESSAGES as u64,
        "every answer was 202 or 503"
    );
    assert!(refused > 0, "the burst outran the slow shard");
    let metrics = gateway.metrics();
    let full = sum_where(
        &metrics,
        "ringcast_queue_full_total",
        Some(("queue", "shard_publish")),
    );
    assert_eq!(
        full,
        (refused + end_refused) as f64,
        "every refusal is counted"
    );
    assert!(
        grown < RSS_GROWTH_BOUND,
        "RSS grew by {grown} bytes (bound {RSS_GROWTH_BOUND})"
    );
}
