//! Redis Sentinel (`--redis redis+sentinel://host:port/mymaster`): a node asks the
//! Sentinel for the master, subscribes there, and follows a failover (the master killed,
//! Sentinel promotes the replica) without dropping a client; an unknown master name, no
//! Sentinel up, or a master the Sentinel names but nobody answers on keep the broker down
//! with the failure counted and logged, retried with backoff.

use ringcast_tests::broker_health::{broker_up, rejected, wait_failures};
use ringcast_tests::gateway::Gateway;
use ringcast_tests::gateway_log::GatewayLog;
use ringcast_tests::metrics::sum;
use ringcast_tests::ports::free_port;
use ringcast_tests::redis_server::{RedisOptions, RedisServer, Reply, Sentinel};
use ringcast_tests::ws_client::{Client, connect, next_message};
use std::time::{Duration, Instant};
use tungstenite::Message;

fn sentinel_url(ports: &[u16], master: &str) -> String {
    let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    format!("redis+sentinel://{}/{master}", hosts.join(","))
}

fn closed_connections(gateway: &Gateway) -> f64 {
    sum(&gateway.metrics(), "ringcast_connections_closed_total")
}

fn expect_text(ws: &mut Client, want: &str, who: &str) {
    match next_message(ws, Duration::from_secs(10)).expect("read") {
        Some(Message::Text(text)) => assert_eq!(text.as_str(), want, "{who}"),
        other => panic!("{who}: expected {want}, got {other:?}"),
    }
}

/// A master, its replica (synced) and a Sentinel that knows both.
fn master_replica_sentinel() -> (RedisServer, RedisServer, Sentinel) {
    let master = RedisServer::start();
    let replica = RedisServer::start_with(RedisOptions {
        replica_of: Some(master.port),
        ..RedisOptions::default()
    });
    replica.wait_until("the replica synced", 20, |r| {
        r.cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    let sentinel = Sentinel::start(master.port);
    // Sentinel learns of replicas from the master's INFO; it can only promote one it
    // knows.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let known = sentinel
            .command(&[b"SENTINEL", b"replicas", Sentinel::MASTER.as_bytes()])
            .ok();
        if matches!(known, Some(Reply::Array(items)) if !items.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Sentinel never saw the replica"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    (master, replica, sentinel)
}

#[test]
fn a_node_finds_the_master_through_sentinel_and_follows_a_failover() {
    let (mut master, replica, sentinel) = master_replica_sentinel();
    let url = sentinel_url(&[sentinel.port], Sentinel::MASTER);
    let a = Gateway::start(1, &["--redis", &url]);
    let b = Gateway::start(1, &["--redis", &url]);
    for gateway in [&a, &b] {
        gateway.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    }
    let mut on_a = connect(a.ws_addr(), "/news");
    master.wait_until("A subscribed at the master", 20, |r| {
        r.subscribers("ringcast:news", false) == 1
    });
    assert_eq!(b.publish("news", b"before"), 202);
    expect_text(&mut on_a, "before", "A through the master Sentinel named");
    let closed_before = closed_connections(&a);

    master.kill();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(30);
    while sentinel.master_port() != Some(replica.port) {
        assert!(
            Instant::now() < deadline,
            "Sentinel did not promote the replica within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let promoted = killed.elapsed();
    // Publish through B until A receives: both must have moved to the new master.
    let mut sent = 0;
    let resumed = loop {
        assert!(
            Instant::now() < deadline,
            "delivery did not resume within 30 s of the kill"
        );
        sent += 1;
        let status = b.publish("news", format!("after-{sent}").as_bytes());
        if status == 202
            && let Some(Message::Text(text)) =
                next_message(&mut on_a, Duration::from_millis(300)).expect("read")
        {
            assert!(text.starts_with("after-"), "{text}");
            break killed.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "Sentinel failover: replica promoted {promoted:?} after the master was killed; \
         delivery resumed {resumed:?} after the kill"
    );
    assert_eq!(replica.role().as_deref(), Some("master"));
    for gateway in [&a, &b] {
        assert_eq!(broker_up(gateway), 1.0);
        assert!(sum(&gateway.metrics(), "ringcast_broker_reconnects_total") >= 1.0);
        assert!(rejected(gateway, "disconnect") >= 1.0);
    }
    assert_eq!(
        replica.subscribers("ringcast:news", false),
        1,
        "A resubscribed at the new master"
    );
    assert_eq!(
        closed_connections(&a),
        closed_before,
        "no client was dropped"
    );
    // Still connected: a plain PUBLISH at the new master reaches the same client.
    assert_eq!(replica.publish("ringcast:news", b"direct"), 1);
    let mut rest = Vec::new();
    while let Some(message) = next_message(&mut on_a, Duration::from_millis(500)).expect("read") {
        rest.push(message);
        if rest.len() > 100 {
            break;
        }
    }
    assert_eq!(
        rest.last(),
        Some(&Message::Text("direct".into())),
        "the subscriber is still there"
    );
}

#[test]
fn unknown_master_no_sentinel_and_an_unreachable_master_keep_the_broker_down() {
    let mut gone = RedisServer::start();
    let sentinel = Sentinel::start(gone.port);
    gone.kill();

    let unknown_log = GatewayLog::new("redis-sentinel", "unknown");
    let unknown = Gateway::start_logged(
        1,
        &["--redis", &sentinel_url(&[sentinel.port], "nosuchmaster")],
        unknown_log.path(),
    );
    let closed = [free_port(), free_port()];
    let down_log = GatewayLog::new("redis-sentinel", "down");
    let all_down = Gateway::start_logged(
        1,
        &["--redis", &sentinel_url(&closed, Sentinel::MASTER)],
        down_log.path(),
    );
    let unreachable_log = GatewayLog::new("redis-sentinel", "unreachable");
    let unreachable = Gateway::start_logged(
        1,
        &["--redis", &sentinel_url(&[sentinel.port], Sentinel::MASTER)],
        unreachable_log.path(),
    );

    wait_failures(&unknown, "sentinel", 2.0, 20);
    wait_failures(&all_down, "sentinel", 2.0, 20);
    wait_failures(&unreachable, "connect", 2.0, 20);
    assert_eq!(rejected(&unreachable, "sentinel"), 0.0);

    let text = unknown_log.wait_for("cannot connect to Redis", 10);
    assert!(text.contains("nosuchmaster"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", sentinel.port)),
        "{text}"
    );
    let text = down_log.wait_for("cannot connect to Redis", 10);
    for port in closed {
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    }
    let text = unreachable_log.wait_for("cannot connect to Redis", 10);
    assert!(
        text.contains(&format!("master 127.0.0.1:{}", gone.port)),
        "{text}"
    );

    // Alive and serving its own clients meanwhile.
    for gateway in [&unknown, &all_down, &unreachable] {
        let mut ws = connect(gateway.ws_addr(), "/local");
        assert_eq!(gateway.publish("local", b"local-only"), 503);
        expect_text(&mut ws, "local-only", "local delivery without Redis");
        assert_eq!(broker_up(gateway), 0.0);
    }

    // The master comes back: the node that was told its address connects.
    gone.restart();
    unreachable.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
}

#[test]
fn a_master_demoted_by_a_manual_failover_is_left_for_the_new_one() {
    let (master, replica, sentinel) = master_replica_sentinel();
    let log = GatewayLog::new("redis-sentinel", "manual");
    let url = sentinel_url(&[sentinel.port], Sentinel::MASTER);
    let a = Gateway::start_logged(1, &["--redis", &url], log.path());
    a.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    let mut on_a = connect(a.ws_addr(), "/news");
    master.wait_until("A subscribed at the master", 20, |r| {
        r.subscribers("ringcast:news", false) == 1
    });
    let closed_before = closed_connections(&a);

    let asked = Instant::now();
    let failover = sentinel
        .command(&[b"SENTINEL", b"FAILOVER", Sentinel::MASTER.as_bytes()])
        .expect("SENTINEL FAILOVER");
    assert_eq!(failover, Reply::Status("OK".into()));
    // The old master stays up (as a replica): the node must notice the switch itself,
    // whether Redis dropped its connection or the periodic Sentinel check saw it.
    let deadline = asked + Duration::from_secs(30);
    let mut sent = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "the node did not follow the manual failover within 30 s"
        );
        if replica.role().as_deref() == Some("master")
            && replica.subscribers("ringcast:news", false) == 1
        {
            sent += 1;
            replica.publish("ringcast:news", format!("after-{sent}").as_bytes());
            if let Some(Message::Text(text)) =
                next_message(&mut on_a, Duration::from_millis(300)).expect("read")
            {
                assert!(text.starts_with("after-"), "{text}");
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "manual Sentinel failover: delivery from the new master {:?} after SENTINEL FAILOVER",
        asked.elapsed()
    );
    assert_eq!(
        closed_connections(&a),
        closed_before,
        "no client was dropped"
    );
    assert_eq!(master.subscribers("ringcast:news", false), 0);
    // The connection given up, by the node (its 2 s Sentinel check) or by Redis.
    let text = log.wait_for("Redis connection lost", 10);
    println!(
        "followed through {}",
        if text.contains("names a new master") {
            "the periodic Sentinel check"
        } else {
            "the lost connection"
        }
    );
}
