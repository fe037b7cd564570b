//! Channel occupancy end to end (real gateways, real `redis-server`, tungstenite
//! clients, a webhook receiver that verifies every signature): `GET /channels` and
//! `GET /channels/{channel}` count a node's subscribers across its shards; occupied and
//! vacated events reach the receiver signed and batched; a receiver that hangs or
//! answers 500 costs dropped and failed events (counted), never memory or a shard;
//! with two nodes on one Redis the cluster count sums both, each cluster transition is
//! reported by exactly one node, a dead node's subscribers are reaped (a big one over
//! several writes, its keys kept meanwhile), a node that was reaped while alive writes
//! its counts again, an outage of Redis longer than the dead-after window reaps nobody,
//! and garbage another "node" wrote into the occupancy keys (counts that are no
//! numbers, names that are no channels or no UTF-8) is counted and survived.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::http;
use ringcast_tests::metrics::sum_where;
use ringcast_tests::redis_server::{RedisCluster, RedisServer, Reply};
use ringcast_tests::webhook_receiver::{Answer, Received, WebhookReceiver};
use ringcast_tests::ws_client::{Client, connect};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "occupancy-webhook-secret";

fn gateway(receiver: &WebhookReceiver, extra: &[&str]) -> Gateway {
    let url = receiver.url();
    let mut args = vec!["--webhook-url", url.as_str(), "--webhook-secret", SECRET];
    args.extend_from_slice(extra);
    Gateway::start(1, &args)
}

fn get_json(gateway: &Gateway, path: &str) -> (u16, Value) {
    let answer = http::get(gateway.admin, path).expect("GET");
    let body = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    (answer.status, body)
}

/// Polls `GET path` until `done(body)` holds, at most `secs`; the last body.
fn wait_json(gateway: &Gateway, path: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, body) = get_json(gateway, path);
        if status == 200 && done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never matched: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(events: &[Received], event: &str, channel: &str) -> usize {
    events
        .iter()
        .filter(|(e, c)| e == event && c == channel)
        .count()
}

fn metric(gateway: &Gateway, name: &str, result: &str) -> f64 {
    sum_where(&gateway.metrics(), name, Some(("result", result)))
}

fn close(mut clients: Vec<Client>) {
    for ws in &mut clients {
        let _ = ws.close(None);
        let _ = ws.flush();
    }
}

#[test]
fn node_counts_and_signed_events() {
    let receiver = WebhookReceiver::start(SECRET, Answer::Ok);
    let gateway = gateway(&receiver, &[]);
    let addr = gateway.ws_addr();
    let news: Vec<Client> = (0..6).map(|_| connect(addr, "/news")).collect();
    let sport = vec![
        connect(addr, "/sport"),
        connect(addr, "/?channels=sport,news.eu"),
    ];

    let one = wait_json(&gateway, "/channels/news", 5, |b| {
        b["subscribers_node"] == 6
    });
    assert_eq!(
        one,
        serde_json::json!({"channel": "news", "subscribers_node": 6}),
        "no cluster count or position without Redis and history"
    );
    let all = wait_json(&gateway, "/channels", 5, |b| {
        b["channels"].as_array().is_some_and(|c| c.len() == 3)
    });
    assert_eq!(
        all,
        serde_json::json!({"channels": [
            {"channel": "news", "subscribers": 6},
            {"channel": "news.eu", "subscribers": 1},
            {"channel": "sport", "subscribers": 2},
        ], "more": false})
    );
    let (_, page) = get_json(&gateway, "/channels?prefix=news&limit=1");
    assert_eq!(
        page,
        serde_json::json!({"channels": [{"channel": "news", "subscribers": 6}], "more": true})
    );
    for bad in [
        "/channels?limit=100000000000000000000",
        "/channels?limit=0",
        "/channels?prefix=%FF",
        "/channels?prefix=a%00",
        "/channels/bad%20name",
    ] {
        let (status, body) = get_json(&gateway, bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}");
    }

    assert!(
        receiver.wait_for(5, |e| {
            ["news", "news.eu", "sport"]
                .iter()
                .all(|c| count(e, "channel_occupied", c) == 1)
        }),
        "{:?}",
        receiver.events()
    );
    close(sport);
    assert!(
        receiver.wait_for(5, |e| count(e, "channel_vacated", "sport") == 1
            && count(e, "channel_vacated", "news.eu") == 1),
        "{:?}",
        receiver.events()
    );
    wait_json(&gateway, "/channels", 5, |b| {
        b["channels"] == serde_json::json!([{"channel": "news", "subscribers": 6}])
    });
    assert_eq!(count(&receiver.events(), "channel_vacated", "news"), 0);
    assert_eq!(receiver.bad_signatures(), 0);
    assert!(
        receiver.requests() <= 3,
        "batched: {} requests",
        receiver.requests()
    );
    drop(news);
    assert!(receiver.wait_for(5, |e| count(e, "channel_vacated", "news") == 1));
    assert_eq!(
        metric(&gateway, "ringcast_webhook_events_total", "sent"),
        6.0
    );
    assert_eq!(
        metric(&gateway, "ringcast_webhook_events_total", "dropped"),
        0.0
    );
}

/// Clients read on threads of their own, answering the server's pings, until
/// [`Answering::stop`]: a long test on a loaded box must not lose them to a pong
/// timeout.
struct Answering {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Client>>,
}

fn answering(clients: Vec<Client>) -> Answering {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = clients
        .into_iter()
        .map(|mut ws| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if ringcast_tests::ws_client::next_message(&mut ws, Duration::from_millis(200))
                        .is_err()
                    {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                ws
            })
        })
        .collect();
    Answering { stop, threads }
}

impl Answering {
    fn stop(self) -> Vec<Client> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .filter_map(|t| t.join().ok())
            .collect()
    }
}

/// Opens `conns` connections each subscribed to `per_conn` channels of its own.
fn many_channels(gateway: &Gateway, conns: usize, per_conn: usize) -> Vec<Client> {
    (0..conns)
        .map(|i| {
            let names: Vec<String> = (0..per_conn).map(|j| format!("c{i}-{j}")).collect();
            connect(
                gateway.ws_addr(),
                &format!("/?channels={}", names.join(",")),
            )
        })
        .collect()
}

#[test]
fn a_hanging_receiver_costs_dropped_events_not_memory() {
    let receiver = WebhookReceiver::start(SECRET, Answer::Hang);
    let gateway = gateway(&receiver, &["--max-channels-per-conn", "500"]);
    // 30,000 occupied events against a queue of 10,000 and a receiver that never answers.
    let clients = many_channels(&gateway, 60, 500);
    gateway.wait_metric("ringcast_channels", 10, |n| n >= 30_000.0);
    let dropped = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let dropped = metric(&gateway, "ringcast_webhook_events_total", "dropped");
            if dropped >= 19_000.0 || Instant::now() > deadline {
                break dropped;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let queued = metric(&gateway, "ringcast_webhook_events_total", "queued");
    assert_eq!(
        queued + dropped,
        30_000.0,
        "every event queued or dropped, once"
    );
    assert!(dropped >= 19_000.0, "dropped {dropped}");
    let waiting = sum_where(&gateway.metrics(), "ringcast_webhook_queue", None);
    assert!(waiting <= 10_000.0, "queue {waiting}");
    // The shards still serve: the API answers and a publish is delivered.
    let mut late = connect(gateway.ws_addr(), "/late");
    wait_json(&gateway, "/channels/late", 5, |b| {
        b["subscribers_node"] == 1
    });
    assert_eq!(gateway.publish("late", b"still here"), 202);
    let message = ringcast_tests::ws_client::next_message(&mut late, Duration::from_secs(5));
    assert!(
        matches!(message, Ok(Some(tungstenite::Message::Text(_)))),
        "{message:?}"
    );
    let rss = gateway.rss_bytes();
    assert!(rss < 200 << 20, "RSS {rss}");
    drop(clients);
}

#[test]
fn a_failing_receiver_is_retried_then_its_events_count_as_failed() {
    let receiver = WebhookReceiver::start(SECRET, Answer::Status(500));
    let gateway = gateway(&receiver, &[]);
    let ws = connect(gateway.ws_addr(), "/news");
    gateway.wait_metric("ringcast_webhook_requests_total", 10, |n| n >= 5.0);
    let failed = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let failed = metric(&gateway, "ringcast_webhook_events_total", "failed");
            if failed >= 1.0 || Instant::now() > deadline {
                break failed;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(failed, 1.0);
    assert_eq!(
        metric(&gateway, "ringcast_webhook_requests_total", "error"),
        5.0
    );
    assert_eq!(receiver.requests(), 5, "five tries, each signed anew");
    assert_eq!(receiver.bad_signatures(), 0);
    drop(ws);
}

/// Two nodes on one Redis, both sending events to one receiver.
#[test]
fn two_nodes_share_cluster_counts_and_report_each_transition_once() {
    let redis = RedisServer::start();
    let receiver = WebhookReceiver::start(SECRET, Answer::Ok);
    let url = redis.url();
    let flags = ["--redis", url.as_str(), "--history-size", "10"];
    let a = gateway(&receiver, &flags);
    let mut b = gateway(&receiver, &flags);
    let on_a = answering((0..2).map(|_| connect(a.ws_addr(), "/news")).collect());
    let mut on_b: Vec<Client> = (0..3).map(|_| connect(b.ws_addr(), "/news")).collect();
    on_b.push(connect(b.ws_addr(), "/sport"));
    let on_b = answering(on_b);
    let seen = wait_json(&a, "/channels/news", 10, |v| v["subscribers_cluster"] == 5);
    assert_eq!(seen["subscribers_node"], 2);
    assert_eq!(seen["position"], Value::Null, "nothing published yet");
    let seen = wait_json(&a, "/channels/sport", 10, |v| v["subscribers_cluster"] == 1);
    assert_eq!(seen["subscribers_node"], 0);
    assert!(
        receiver.wait_for(5, |e| count(e, "channel_occupied", "news") >= 1
            && count(e, "channel_occupied", "sport") >= 1)
    );
    assert_eq!(a.publish("news", b"one"), 202);
    assert_eq!(a.publish("news", b"two"), 202);
    let with_position = wait_json(&b, "/channels/news", 5, |v| v["position"].is_string());
    let position = with_position["position"].as_str().unwrap_or_default();
    assert!(position.ends_with(":2"), "{position}");

    // Garbage in the shared keys: another "node" whose counts are not numbers, dead
    // long ago, and a cluster sum that is not a number.
    let garbage = [
        [
            "ZADD",
            "{ringcast:occupancy}:nodes",
            "0",
            "feedfacefeedface",
        ],
        [
            "HSET",
            "{ringcast:occupancy}:node:feedfacefeedface",
            "news",
            "lots",
        ],
        ["HSET", "{ringcast:occupancy}:sum", "junk", "many"],
        ["HSET", "{ringcast:occupancy}:sum", "bad name", "2"],
        [
            "HSET",
            "{ringcast:occupancy}:node:feedfacefeedface",
            "bad name",
            "2",
        ],
    ];
    for command in garbage {
        let args: Vec<&[u8]> = command.iter().map(|s| s.as_bytes()).collect();
        redis.command(&args);
    }
    // A name that is no UTF-8: reaping it takes it to 0, a "vacated" no webhook may see.
    for key in [
        &b"{ringcast:occupancy}:sum"[..],
        b"{ringcast:occupancy}:node:feedfacefeedface",
    ] {
        redis.command(&[b"HSET", key, b"n\xff", b"3"]);
    }
    let (status, junk) = get_json(&a, "/channels/junk");
    assert_eq!(status, 200);
    assert_eq!(junk["subscribers_cluster"], Value::Null);
    assert!(junk["cluster_error"].is_string(), "{junk}");
    let deadline = Instant::now() + Duration::from_secs(10);
    // `lots`, and the two names of the transitions the reap caused.
    while sum_where(&a.metrics(), "ringcast_occupancy_garbage_total", None)
        + sum_where(&b.metrics(), "ringcast_occupancy_garbage_total", None)
        < 3.0
    {
        assert!(Instant::now() < deadline, "the dead node was never reaped");
        std::thread::sleep(Duration::from_millis(100));
    }
    let reply = redis.command(&[
        b"ZSCORE",
        b"{ringcast:occupancy}:nodes",
        b"feedfacefeedface",
    ]);
    assert_eq!(reply, Reply::Bulk(None), "reaped");
    let events = receiver.events();
    assert!(
        events.iter().all(|(_, c)| c == "news" || c == "sport"),
        "{events:?}"
    );
    wait_json(&a, "/channels/news", 5, |v| v["subscribers_cluster"] == 5);

    // One live node made to look dead (as if it alone were cut off from Redis for 5 s):
    // whichever writes first, the other reaps it or it finds its heartbeat old, and
    // either way it writes all its counts again; the counts stay right.
    let reaped = |g: &Gateway| sum_where(&g.metrics(), "ringcast_occupancy_reaped_total", None);
    let reaped_before = reaped(&a) + reaped(&b);
    let nodes = redis.command(&[b"ZRANGE", b"{ringcast:occupancy}:nodes", b"0", b"-1"]);
    let victim = nodes.strings().into_iter().next().unwrap_or_default();
    redis.command(&[
        b"ZADD",
        b"{ringcast:occupancy}:nodes",
        b"0",
        victim.as_bytes(),
    ]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let score = redis.command(&[b"ZSCORE", b"{ringcast:occupancy}:nodes", victim.as_bytes()]);
        if matches!(&score, Reply::Bulk(Some(s)) if s.as_slice() != b"0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stale node never wrote again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_json(&a, "/channels/news", 5, |v| v["subscribers_cluster"] == 5);
    wait_json(&b, "/channels/sport", 5, |v| v["subscribers_cluster"] == 1);
    // `sport` (only on B) went vacated and occupied again only when B was reaped; a
    // node that found its own heartbeat old dropped nothing, so reported nothing.
    assert!(receiver.wait_for(5, |e| {
        count(e, "channel_occupied", "sport") == count(e, "channel_vacated", "sport") + 1
    }));
    if reaped(&a) + reaped(&b) == reaped_before {
        let events = receiver.events();
        assert_eq!(count(&events, "channel_vacated", "sport"), 0, "{events:?}");
        assert_eq!(count(&events, "channel_vacated", "news"), 0, "{events:?}");
    }

    // Node B dies: its subscribers are reaped by A within the heartbeat window.
    let killed = Instant::now();
    b.signal(libc::SIGKILL);
    let _ = b.wait_exit(5);
    drop(on_b.stop());
    wait_json(&a, "/channels/news", 15, |v| v["subscribers_cluster"] == 2);
    wait_json(&a, "/channels/sport", 5, |v| v["subscribers_cluster"] == 0);
    let reaped_after = killed.elapsed();
    assert!(receiver.wait_for(5, |e| count(e, "channel_vacated", "sport") == 1));
    assert!(
        reaped_after < Duration::from_secs(9),
        "reaped after {reaped_after:?}"
    );
    close(on_a.stop());
    assert!(receiver.wait_for(5, |e| count(e, "channel_vacated", "news") == 1));
    std::thread::sleep(Duration::from_millis(1500));
    let events = receiver.events();
    assert_eq!(count(&events, "channel_occupied", "news"), 1, "{events:?}");
    assert_eq!(count(&events, "channel_vacated", "news"), 1, "{events:?}");
    let sport: Vec<&str> = events
        .iter()
        .filter(|(_, c)| c == "sport")
        .map(|(e, _)| e.as_str())
        .collect();
    assert!(
        sport.len().is_multiple_of(2)
            && sport
                .chunks(2)
                .all(|p| p == ["channel_occupied", "channel_vacated"]),
        "sport's events alternate: {sport:?}"
    );
    assert_eq!(receiver.bad_signatures(), 0);
    eprintln!("B's subscribers reaped {reaped_after:?} after its SIGKILL");
}

/// Reads the clients for `total` (split between them), answering the server's pings.
fn answer_pings(clients: &mut [Client], total: Duration) {
    for ws in clients.iter_mut() {
        let message = ringcast_tests::ws_client::next_message(ws, total / 2);
        assert!(matches!(message, Ok(None)), "{message:?}");
    }
}

/// Redis stops taking writes for longer than the dead-after window (5 s), for every node
/// at once: when it is back every heartbeat is old, yet nobody is reaped, no channel is
/// reported vacated, and the counts stay right.
#[test]
fn a_redis_outage_reaps_nobody() {
    let redis = RedisServer::start();
    let receiver = WebhookReceiver::start(SECRET, Answer::Ok);
    let url = redis.url();
    let flags = ["--redis", url.as_str()];
    let a = gateway(&receiver, &flags);
    let b = gateway(&receiver, &flags);
    let mut clients = [
        connect(a.ws_addr(), "/news"),
        connect(b.ws_addr(), "/sport"),
    ];
    wait_json(&a, "/channels/news", 10, |v| v["subscribers_cluster"] == 1);
    wait_json(&a, "/channels/sport", 10, |v| v["subscribers_cluster"] == 1);
    assert!(
        receiver.wait_for(5, |e| count(e, "channel_occupied", "news") == 1
            && count(e, "channel_occupied", "sport") == 1)
    );
    let reaped = |g: &Gateway| sum_where(&g.metrics(), "ringcast_occupancy_reaped_total", None);
    let reaped_before = reaped(&a) + reaped(&b);

    // Every script waits 6.5 s, then they all run: each node's heartbeat is older than
    // 5 s when the first one does.
    assert_eq!(
        redis.command(&[b"CLIENT", b"PAUSE", b"6500", b"WRITE"]),
        Reply::Status("OK".into())
    );
    answer_pings(&mut clients, Duration::from_millis(7000));
    let nodes = b"{ringcast:occupancy}:nodes";
    let deadline = Instant::now() + Duration::from_secs(5);
    let redis_ms = |r: &RedisServer| {
        let time = r.command(&[b"TIME"]).strings();
        let secs: i64 = time.first().and_then(|s| s.parse().ok()).unwrap_or(0);
        secs * 1000
    };
    loop {
        let fresh = redis
            .command(&[
                b"ZRANGEBYSCORE",
                nodes,
                format!("{}", redis_ms(&redis) - 2000).as_bytes(),
                b"+inf",
            ])
            .strings()
            .len();
        if fresh == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the nodes never wrote again");
        std::thread::sleep(Duration::from_millis(100));
    }
    answer_pings(&mut clients, Duration::from_millis(2500));
    wait_json(&a, "/channels/news", 5, |v| v["subscribers_cluster"] == 1);
    wait_json(&b, "/channels/sport", 5, |v| v["subscribers_cluster"] == 1);
    assert_eq!(reaped(&a) + reaped(&b), reaped_before, "nobody reaped");
    let events = receiver.events();
    for channel in ["news", "sport"] {
        assert_eq!(count(&events, "channel_occupied", channel), 1, "{events:?}");
        assert_eq!(count(&events, "channel_vacated", channel), 0, "{events:?}");
    }
    assert_eq!(redis.command(&[b"ZCARD", nodes]).int(), 2);

    // A dead node of 20,000 channels (with no TTL of its own, as if it had written
    // none lately) takes several writes to reap: meanwhile its hash gets the TTL, so it
    // cannot expire with its counts still in the sums, nor stay forever.
    let dead = b"{ringcast:occupancy}:node:deadbeefdeadbeef";
    let fields: Vec<Vec<u8>> = (0..20_000)
        .flat_map(|i| [format!("g{i}").into_bytes(), b"1".to_vec()])
        .collect();
    let mut hset: Vec<&[u8]> = vec![b"HSET", dead];
    hset.extend(fields.iter().map(Vec::as_slice));
    redis.command(&hset);
    redis.command(&[b"ZADD", nodes, b"0", b"deadbeefdeadbeef"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut kept_with_ttl = false;
    loop {
        let (ttl, len) = (
            redis.command(&[b"PTTL", dead]).int(),
            redis.command(&[b"HLEN", dead]).int(),
        );
        kept_with_ttl |= ttl > 0 && len > 0 && len < 20_000;
        if len == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never reaped: {len} left");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(kept_with_ttl, "the half-reaped hash had no TTL");
    assert_eq!(redis.command(&[b"ZCARD", nodes]).int(), 2);
    wait_json(&a, "/channels/news", 5, |v| v["subscribers_cluster"] == 1);
}

#[test]
fn one_node_with_history_answers_the_channels_position() {
    let receiver = WebhookReceiver::start(SECRET, Answer::Ok);
    let gateway = gateway(&receiver, &["--history-size", "10"]);
    let _ws = connect(gateway.ws_addr(), "/news");
    let before = wait_json(&gateway, "/channels/news", 5, |b| {
        b["subscribers_node"] == 1
    });
    assert_eq!(before["position"], Value::Null, "nothing published yet");
    for body in [&b"one"[..], b"two", b"three"] {
        assert_eq!(gateway.publish("news", body), 202);
    }
    let after = wait_json(&gateway, "/channels/news", 5, |b| b["position"].is_string());
    let position = after["position"].as_str().unwrap_or_default();
    assert!(position.ends_with(":3"), "{position}");
    let (_, nobody) = get_json(&gateway, "/channels/nobody");
    assert_eq!(
        nobody,
        serde_json::json!({"channel": "nobody", "subscribers_node": 0, "position": null})
    );
}

/// Two nodes on a Redis Cluster of three masters: the occupancy keys live at the master
/// of their one hash tag's slot, wherever each node's control channel is.
#[test]
fn cluster_counts_on_redis_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let receiver = WebhookReceiver::start(SECRET, Answer::Ok);
    let url = cluster.url(2);
    let flags = ["--redis", url.as_str(), "--redis-cluster"];
    let a = gateway(&receiver, &flags);
    let b = gateway(&receiver, &flags);
    for node in [&a, &b] {
        node.wait_metric("ringcast_broker_up", 30, |up| up == 1.0);
    }
    let on_a: Vec<Client> = (0..2).map(|_| connect(a.ws_addr(), "/news")).collect();
    let on_b: Vec<Client> = (0..3).map(|_| connect(b.ws_addr(), "/news")).collect();
    let seen = wait_json(&b, "/channels/news", 15, |v| v["subscribers_cluster"] == 5);
    assert_eq!(seen["subscribers_node"], 3);
    let sum = "{ringcast:occupancy}:sum";
    let master = cluster.node(cluster.master_of(cluster.slot(sum)));
    let stored = master.command(&[b"HGET", sum.as_bytes(), b"news"]);
    assert_eq!(stored, Reply::Bulk(Some(b"5".to_vec())));
    assert!(receiver.wait_for(5, |e| count(e, "channel_occupied", "news") == 1));
    close(on_a);
    close(on_b);
    assert!(receiver.wait_for(10, |e| count(e, "channel_vacated", "news") == 1));
    assert_eq!(count(&receiver.events(), "channel_occupied", "news"), 1);
    // Writes may fail while the broker is still connecting at start, not later.
    let errors = metric(&a, "ringcast_occupancy_flushes_total", "error");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        metric(&a, "ringcast_occupancy_flushes_total", "error"),
        errors
    );
    assert!(metric(&a, "ringcast_occupancy_flushes_total", "ok") >= 2.0);
}
