//! The admin API and process shape of the real gateway: publish answers and delivery
//! (text vs binary), bad channel and size errors, health and readiness, every metric
//! name in /metrics, one io_uring and one listener per port per shard, and server pings
//! answered by a client that keeps reading.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::http;
use ringcast_tests::ws_client::{Client, connect, next_message, sync_subscriber, try_upgrade};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Every metric a deployment's dashboards and the issue rely on.
const METRIC_NAMES: [&str; 13] = [
    "ringcast_connections",
    "ringcast_connections_accepted_total",
    "ringcast_connections_closed_total",
    "ringcast_handshake_failures_total",
    "ringcast_pings_sent_total",
    "ringcast_pongs_received_total",
    "ringcast_ping_timeouts_total",
    "ringcast_messages_published_total",
    "ringcast_messages_delivered_total",
    "ringcast_channels",
    "ringcast_subscriptions",
    "process_resident_memory_bytes",
    "process_open_fds",
];

/// Names in `names` that have no sample line (only `# HELP`/`# TYPE` does not count).
fn missing_samples<'a>(text: &str, names: &[&'a str]) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|name| {
            !text.lines().any(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
        })
        .collect()
}

fn next_data(ws: &mut Client) -> Message {
    next_message(ws, Duration::from_secs(10))
        .expect("subscriber read")
        .expect("no message within 10 s")
}

#[test]
fn publish_health_and_metrics_routes() {
    let gateway = Gateway::start(1, &["--max-message-bytes", "1024"]);
    let mut subscriber = connect(gateway.ws_addr(), "/news");
    sync_subscriber(&gateway, "news", &mut subscriber);

    let answer = http::post(gateway.admin, "/publish/news", b"hello").expect("publish");
    assert_eq!(answer.status, 202, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON answer");
    assert_eq!(json["channel"], "news", "{}", answer.body);
    assert_eq!(next_data(&mut subscriber), Message::text("hello"));

    let binary = [0xff, 0xfe, 0x00, 0x80];
    assert_eq!(gateway.publish("news", &binary), 202);
    assert_eq!(next_data(&mut subscriber), Message::binary(binary.to_vec()));
    assert_eq!(gateway.publish("news", "héllo".as_bytes()), 202);
    assert_eq!(next_data(&mut subscriber), Message::text("héllo"));

    let largest = vec![b'x'; 1024];
    assert_eq!(gateway.publish("news", &largest), 202);
    assert_eq!(next_data(&mut subscriber), Message::text("x".repeat(1024)));
    assert_eq!(gateway.publish("news", &[b'x'; 1025]), 413);
    assert_eq!(gateway.publish("bad%20chan", b"x"), 400);

    for (path, status) in [("/healthz", 200), ("/readyz", 200), ("/no/such/route", 404)] {
        let answer = http::get(gateway.admin, path).expect("GET");
        assert_eq!(answer.status, status, "GET {path}: {}", answer.body);
    }

    // One failed handshake and one closed connection, so the reason-labelled
    // counters have series.
    let refused = try_upgrade(gateway.ws_addr(), "/").1;
    assert_eq!(refused, 404);
    let mut leaving = connect(gateway.ws_addr(), "/echo");
    leaving.close(None).expect("close");
    while leaving.read().is_ok() {}

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let missing = missing_samples(&gateway.metrics(), &METRIC_NAMES);
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "/metrics lacks {missing:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `/proc/net/tcp` LISTEN sockets on 127.0.0.1:`port`.
fn loopback_listeners(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        })
        .count()
}

#[test]
fn one_ring_and_one_listener_per_port_per_shard() {
    let gateway = Gateway::start(3, &[]);
    let rings = std::fs::read_dir(format!("/proc/{}/fd", gateway.pid()))
        .expect("/proc/PID/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_str() == Some("anon_inode:[io_uring]"))
        .count();
    assert_eq!(rings, 2, "io_uring instances for 2 shards");
    for port in gateway.first_port..gateway.first_port + 3 {
        assert_eq!(loopback_listeners(port), 2, "listeners on port {port}");
    }
}

#[test]
fn server_pings_are_answered_by_a_reading_client() {
    let gateway = Gateway::start(1, &["--ping-interval", "0.5"]);
    let mut ws = connect(gateway.ws_addr(), "/pinged");
    let until = Instant::now() + Duration::from_secs(2);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if let Some(msg) = next_message(&mut ws, left).expect("client read") {
            panic!("client got {msg:?}");
        }
    }
    gateway.wait_metric("ringcast_pings_sent_total", 10, |v| v > 0.0);
    gateway.wait_metric("ringcast_pongs_received_total", 10, |v| v > 0.0);
    let timeouts = ringcast_tests::metrics::sum(&gateway.metrics(), "ringcast_ping_timeouts_total");
    assert_eq!(timeouts, 0.0);
}
