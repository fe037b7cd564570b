//! Two gateway processes behind one real redis-server act as one cluster, in each Redis
//! mode: subscribers of the same channels on both nodes get every message published
//! through `redis-cli`, node A's API and node B's API exactly once and in order; in
//! interest mode a node drops its Redis subscription within 2 s after its last local
//! subscriber leaves, and subscription changes are batched.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::metrics::sum;
use ringcast_tests::redis_server::RedisServer;
use ringcast_tests::ws_client::{Client, connect, next_message};
use std::time::{Duration, Instant};
use tungstenite::Message;

const PREFIX: &str = "ringcast:";
const CHANNELS: [&str; 3] = ["c0", "c1", "c2"];
const PER_CHANNEL_PER_NODE: usize = 3;
const MESSAGES: u64 = 30;

/// A gateway on `redis` in `mode`, once its broker is up.
fn node(redis: &RedisServer, mode: &str) -> Gateway {
    let url = redis.url();
    let gateway = Gateway::start(1, &["--redis", &url, "--redis-mode", mode]);
    gateway.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    gateway
}

/// Waits until Redis has `nodes` subscriptions for every channel (per the mode) and each
/// gateway counts `per_node` local subscriptions.
fn wait_subscribed(redis: &RedisServer, mode: &str, gateways: &[&Gateway], per_node: usize) {
    for gateway in gateways {
        gateway.wait_metric("ringcast_subscriptions", 20, |n| n == per_node as f64);
    }
    let nodes = gateways.len() as i64;
    // A node reports its broker up only after its PSUBSCRIBE was confirmed, and NUMPAT
    // counts unique patterns: one for all nodes.
    redis.wait_until("every node subscribed", 20, |r| match mode {
        "pattern" => r.patterns() == 1,
        _ => CHANNELS
            .iter()
            .all(|ch| r.subscribers(&format!("{PREFIX}{ch}"), mode == "sharded") == nodes),
    });
}

/// Reads `count` messages `"<seq>:..."` with seq 0, 1, 2, ... then checks nothing more
/// arrives.
fn expect_in_order(ws: &mut Client, count: u64, who: &str) {
    for want in 0..count {
        let msg = next_message(ws, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{who}: read error {e}"))
            .unwrap_or_else(|| panic!("{who}: message {want} never came"));
        let Message::Text(text) = msg else {
            panic!("{who}: unexpected {msg:?}")
        };
        let seq: u64 = text
            .split(':')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{who}: bad body {text}"));
        assert_eq!(seq, want, "{who}: got {text} out of order");
    }
    let extra = next_message(ws, Duration::from_millis(300)).expect("read");
    assert!(
        extra.is_none(),
        "{who}: duplicate or extra message {extra:?}"
    );
}

fn exactly_once_in_order(mode: &str) {
    let redis = RedisServer::start();
    let a = node(&redis, mode);
    let b = node(&redis, mode);
    let mut clients = Vec::new();
    for (name, gateway) in [("A", &a), ("B", &b)] {
        for ch in CHANNELS {
            for i in 0..PER_CHANNEL_PER_NODE {
                let ws = connect(gateway.ws_addr(), &format!("/{ch}"));
                clients.push((format!("{name}/{ch}/{i}"), ws));
            }
        }
    }
    let per_node = CHANNELS.len() * PER_CHANNEL_PER_NODE;
    wait_subscribed(&redis, mode, &[&a, &b], per_node);

    let publish_command = if mode == "sharded" {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    for seq in 0..MESSAGES {
        for ch in CHANNELS {
            match seq % 3 {
                0 => {
                    let key = format!("{PREFIX}{ch}");
                    let body = format!("{seq}:redis-cli");
                    let out = redis.cli(&[publish_command, &key, &body]);
                    assert_eq!(out.trim(), "2", "{publish_command} reached both nodes");
                }
                1 => assert_eq!(a.publish(ch, format!("{seq}:node-a").as_bytes()), 202),
                _ => assert_eq!(b.publish(ch, format!("{seq}:node-b").as_bytes()), 202),
            }
        }
    }
    for (who, ws) in &mut clients {
        expect_in_order(ws, MESSAGES, who);
    }
    for gateway in [&a, &b] {
        let text = gateway.metrics();
        let received = sum(&text, "ringcast_broker_messages_received_total");
        assert!(
            received >= (MESSAGES * CHANNELS.len() as u64) as f64,
            "{received}"
        );
        assert_eq!(sum(&text, "ringcast_broker_publish_errors_total"), 0.0);
        assert_eq!(sum(&text, "ringcast_broker_rejected_total"), 0.0);
        // Node-originated messages carry a timestamp: the latency histogram has samples.
        assert!(sum(&text, "ringcast_broker_latency_seconds_count") > 0.0);
    }
}

#[test]
fn interest_mode_delivers_every_message_once_in_order_on_both_nodes() {
    exactly_once_in_order("interest");
}

#[test]
fn pattern_mode_delivers_every_message_once_in_order_on_both_nodes() {
    exactly_once_in_order("pattern");
}

#[test]
fn sharded_mode_delivers_every_message_once_in_order_on_both_nodes() {
    exactly_once_in_order("sharded");
}

#[test]
fn interest_mode_unsubscribes_within_two_seconds_of_the_last_subscriber_leaving() {
    let redis = RedisServer::start();
    let a = node(&redis, "interest");
    let mut leaving: Vec<Client> = (0..3).map(|_| connect(a.ws_addr(), "/gone")).collect();
    let _staying = connect(a.ws_addr(), "/stay");
    // Beside the clients' channels, the node's own control channel.
    redis.wait_until("both channels subscribed", 20, |r| {
        r.channels("ringcast:*") == ["ringcast:#control", "ringcast:gone", "ringcast:stay"]
    });
    for ws in &mut leaving {
        ws.close(None).expect("close");
        while ws.read().is_ok() {}
    }
    drop(leaving);
    let left = Instant::now();
    redis.wait_until("ringcast:gone unsubscribed", 2, |r| {
        r.channels("ringcast:*") == ["ringcast:#control", "ringcast:stay"]
    });
    eprintln!(
        "PUBSUB CHANNELS dropped the channel {:?} after its subscribers left",
        left.elapsed()
    );
    a.wait_metric("ringcast_broker_subscriptions", 10, |n| n == 1.0);
}

#[test]
fn interest_mode_batches_many_channels_per_subscribe() {
    const N: usize = 300;
    let redis = RedisServer::start();
    let a = node(&redis, "interest");
    let calls_before = subscribe_calls(&redis);
    let clients: Vec<Client> = (0..N)
        .map(|i| connect(a.ws_addr(), &format!("/many-{i}")))
        .collect();
    redis.wait_until("every channel subscribed", 20, |r| {
        r.channels("ringcast:many-*").len() == N
    });
    let calls = subscribe_calls(&redis) - calls_before;
    eprintln!("{N} channels took {calls} SUBSCRIBE commands");
    assert!(
        calls < N as u64,
        "SUBSCRIBE is batched: {calls} commands for {N} channels"
    );
    a.wait_metric("ringcast_broker_subscriptions", 10, |n| n == N as f64);
    drop(clients);
    redis.wait_until("every channel unsubscribed", 20, |r| {
        r.channels("ringcast:many-*").is_empty()
    });
}

/// `calls` of `cmdstat_subscribe` in `INFO commandstats`.
fn subscribe_calls(redis: &RedisServer) -> u64 {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_subscribe:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
