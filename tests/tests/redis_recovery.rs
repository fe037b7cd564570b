//! Recovery across nodes with Redis keeping the history (real `redis-server`, real
//! gateways): positions are cluster-wide, so a client resumes on a node that cached the
//! messages or on one that never saw the channel (it reads Redis); and the rolling
//! restart: clients on two nodes, a publisher at a fixed rate, node A drained (its
//! clients move to B), A started again, B drained (everyone moves to the new A) — every
//! client receives every message exactly once, in order.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::redis_server::RedisServer;
use ringcast_tests::ws_client::{Client, connect, next_message};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;

fn node(redis: &RedisServer, extra: &[&str]) -> Gateway {
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str(), "--history-size", "1000"];
    args.extend_from_slice(extra);
    let gateway = Gateway::start(1, &args);
    gateway.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    gateway
}

fn next_object(ws: &mut Client, within: Duration) -> Option<Value> {
    match next_message(ws, within) {
        Ok(Some(Message::Text(text))) => serde_json::from_str(text.as_str()).ok(),
        _ => None,
    }
}

/// Reads `message` objects until `count` arrived; their offsets (and the epoch).
fn read_messages(ws: &mut Client, count: usize) -> (Vec<u64>, String) {
    let mut offsets = Vec::new();
    let mut epoch = String::new();
    while offsets.len() < count {
        let Some(object) = next_object(ws, Duration::from_secs(10)) else {
            panic!("only {} of {count} messages", offsets.len());
        };
        if object["type"] == "message" {
            offsets.push(object["offset"].as_u64().expect("offset"));
            epoch = object["epoch"].as_str().expect("epoch").to_owned();
        }
    }
    (offsets, epoch)
}

/// Connects and waits for the `subscribed` object.
fn subscribe(addr: SocketAddr, path: &str) -> (Client, Value) {
    let mut ws = connect(addr, path);
    let subscribed = next_object(&mut ws, Duration::from_secs(10)).expect("subscribed");
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    (ws, subscribed)
}

fn publish_range(gateway: &Gateway, channel: &str, range: std::ops::RangeInclusive<u32>) {
    for i in range {
        assert_eq!(gateway.publish(channel, format!("m{i}").as_bytes()), 202);
    }
}

#[test]
fn a_client_resumes_on_another_node_from_its_cache_or_from_redis_in_every_mode() {
    for mode in ["interest", "pattern", "sharded"] {
        resume_on_another_node(mode);
    }
}

fn resume_on_another_node(mode: &str) {
    let redis = RedisServer::start();
    let mode_flag = ["--redis-mode", mode];
    let a = node(&redis, &mode_flag);
    let b = node(&redis, &mode_flag);
    let (mut first, _) = subscribe(a.ws_addr(), "/news?format=json");
    // B has a subscriber too, so it caches what it receives.
    let (_keeper, _) = subscribe(b.ws_addr(), "/news?format=json");
    publish_range(&a, "news", 1..=50);
    let (offsets, epoch) = read_messages(&mut first, 50);
    assert_eq!(offsets, (1..=50).collect::<Vec<_>>());
    drop(first);
    publish_range(&b, "news", 51..=100);
    let cached = b.wait_metric("ringcast_history_messages", 10, |n| n >= 100.0);
    assert!(cached >= 100.0);
    // On B: from its cache.
    let (mut on_b, subscribed) =
        subscribe(b.ws_addr(), &format!("/news?format=json&since={epoch}:50"));
    assert_eq!(
        (
            subscribed["recovered"].as_bool(),
            subscribed["offset"].as_u64()
        ),
        (Some(true), Some(100))
    );
    assert_eq!(
        read_messages(&mut on_b, 50).0,
        (51..=100).collect::<Vec<_>>()
    );
    // On a node that never saw the channel: read from Redis.
    let c = node(&redis, &mode_flag);
    let (mut on_c, subscribed) =
        subscribe(c.ws_addr(), &format!("/news?format=json&since={epoch}:50"));
    assert_eq!(
        (
            subscribed["recovered"].as_bool(),
            subscribed["offset"].as_u64()
        ),
        (Some(true), Some(100))
    );
    assert_eq!(
        read_messages(&mut on_c, 50).0,
        (51..=100).collect::<Vec<_>>()
    );
    publish_range(&a, "news", 101..=101);
    assert_eq!(read_messages(&mut on_c, 1).0, vec![101]);
    assert_eq!(read_messages(&mut on_b, 1).0, vec![101]);
    assert!(
        next_object(&mut on_c, Duration::from_millis(300)).is_none(),
        "no duplicate"
    );
    // A position Redis no longer knows: told, not replayed.
    let (_, subscribed) = subscribe(c.ws_addr(), "/news?format=json&since=AAAAAAAA:5");
    assert_eq!(subscribed["recovered"], false, "{mode}");
    assert_eq!(subscribed["epoch"], epoch.as_str(), "{mode}");
}

/// One resuming client: follows `urls` in turn whenever its connection ends, resuming
/// from the last position it got, and records every offset it receives.
struct Resumer {
    seen: Arc<Mutex<Vec<u64>>>,
    reconnects: Arc<AtomicU64>,
}

fn spawn_resumer(
    channel: String,
    urls: Arc<Mutex<Vec<SocketAddr>>>,
    start: usize,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicU64>,
) -> Resumer {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reconnects = Arc::new(AtomicU64::new(0));
    let (out, count) = (seen.clone(), reconnects.clone());
    std::thread::spawn(move || {
        let mut position: Option<(String, u64)> = None;
        let mut turn = start;
        let mut first = true;
        while !stop.load(Ordering::SeqCst) {
            let addr = {
                let urls = urls.lock().expect("urls");
                urls[turn % urls.len()]
            };
            turn += 1;
            let since = position
                .as_ref()
                .map(|(e, o)| format!("&since={e}:{o}"))
                .unwrap_or_default();
            let path = format!("/{channel}?format=json{since}");
            let url = format!("ws://{addr}{path}");
            let Ok(stream) = std::net::TcpStream::connect(addr) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let Ok((mut ws, _)) = tungstenite::client::client(url.as_str(), stream) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            if !first {
                count.fetch_add(1, Ordering::SeqCst);
            }
            loop {
                match next_message(&mut ws, Duration::from_millis(200)) {
                    Ok(Some(Message::Text(text))) => {
                        let Ok(object) = serde_json::from_str::<Value>(text.as_str()) else {
                            continue;
                        };
                        if object["type"] == "subscribed" && first {
                            first = false;
                            ready.fetch_add(1, Ordering::SeqCst);
                        }
                        if object["type"] == "message"
                            && let (Some(e), Some(o)) =
                                (object["epoch"].as_str(), object["offset"].as_u64())
                        {
                            out.lock().expect("seen").push(o);
                            position = Some((e.to_owned(), o));
                        }
                    }
                    Ok(None) if !stop.load(Ordering::SeqCst) => {}
                    _ => break,
                }
            }
        }
    });
    Resumer { seen, reconnects }
}

#[test]
fn a_rolling_restart_loses_and_repeats_nothing() {
    const CLIENTS: usize = 40;
    const CHANNELS: usize = 4;
    let redis = RedisServer::start();
    let drain = ["--drain-seconds", "2"];
    let publisher = node(&redis, &[]);
    let mut a = node(&redis, &drain);
    let b = node(&redis, &drain);
    let urls = Arc::new(Mutex::new(vec![a.ws_addr(), b.ws_addr()]));
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicU64::new(0));
    let clients: Vec<(usize, Resumer)> = (0..CLIENTS)
        .map(|i| {
            let channel = i % CHANNELS;
            let r = spawn_resumer(
                format!("roll{channel}"),
                urls.clone(),
                i,
                stop.clone(),
                ready.clone(),
            );
            (channel, r)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready.load(Ordering::SeqCst) < CLIENTS as u64 {
        assert!(Instant::now() < deadline, "clients did not subscribe");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The publisher: 100 messages/s round-robin over the channels, for ~9 s.
    let published = Arc::new(AtomicU64::new(0));
    let per_channel = Arc::new(Mutex::new(vec![0u64; CHANNELS]));
    let pub_thread = {
        let (published, per_channel) = (published.clone(), per_channel.clone());
        let admin = publisher.admin;
        std::thread::spawn(move || {
            for i in 0..900u64 {
                let channel = (i as usize) % CHANNELS;
                let body = format!("p{i}");
                let answer = ringcast_tests::http::post(
                    admin,
                    &format!("/publish/roll{channel}"),
                    body.as_bytes(),
                );
                if answer.is_ok_and(|a| a.status == 202) {
                    per_channel.lock().expect("counts")[channel] += 1;
                    published.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    // Drain A: its clients move to B.
    *urls.lock().expect("urls") = vec![b.ws_addr()];
    a.signal(libc::SIGTERM);
    assert!(a.wait_exit(10).is_some(), "A drained and exited");
    // A again (a new process), then drain B: everyone moves to the new A.
    let a2 = node(&redis, &drain);
    *urls.lock().expect("urls") = vec![a2.ws_addr()];
    let mut b = b;
    b.signal(libc::SIGTERM);
    assert!(b.wait_exit(10).is_some(), "B drained and exited");
    pub_thread.join().expect("publisher");
    let want = per_channel.lock().expect("counts").clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done = clients
            .iter()
            .all(|(ch, r)| r.seen.lock().expect("seen").len() as u64 >= want[*ch]);
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let mut moved = 0;
    for (i, (channel, r)) in clients.iter().enumerate() {
        let seen = r.seen.lock().expect("seen").clone();
        let expected: Vec<u64> = (1..=want[*channel]).collect();
        assert_eq!(
            seen, expected,
            "client {i} on roll{channel}: lost, repeated or out of order"
        );
        moved += r.reconnects.load(Ordering::SeqCst);
    }
    assert!(
        moved >= CLIENTS as u64,
        "every client moved at least once: {moved}"
    );
    assert!(published.load(Ordering::SeqCst) >= 800);
}
