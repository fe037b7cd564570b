//! Redis Cluster (`--redis-cluster`): two gateways on a real cluster of 3 masters and 3
//! replicas (node timeout 2 s) subscribe each channel at its slot's master, carry
//! publishes through both admin APIs to subscribers on both (with history in Redis, the
//! history script at the channel's master), follow a slot migration
//! (Redis unsubscribes the slot's channels; the nodes subscribe them at the new owner),
//! the slot moving back and forth during a publish burst (MOVED followed, counted), and
//! a master killed by pid mid-stream (its replica promoted; delivery resumes on
//! both gateways, no client dropped, no restart; time to resume and messages lost are
//! printed; a third node then reads a channel's history from the promoted master). Bad
//! input: a seed list with a dead seed first, every seed down, and a
//! cluster answering CLUSTERDOWN are counted, logged with the node's address, retried,
//! and never stop local delivery.

use ringcast_tests::broker_health::{broker_up, rejected, wait_failures};
use ringcast_tests::gateway::Gateway;
use ringcast_tests::gateway_log::GatewayLog;
use ringcast_tests::http;
use ringcast_tests::metrics::sum;
use ringcast_tests::ports::free_port;
use ringcast_tests::redis_server::{RedisCluster, RedisOptions, RedisServer, Reply};
use ringcast_tests::ws_client::{Client, connect, next_message};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;

const PREFIX: &str = "ringcast:";
/// Channels per master.
const PER_MASTER: usize = 2;

fn cluster_gateway(url: &str, log: Option<&GatewayLog>) -> Gateway {
    let args = ["--redis", url, "--redis-cluster"];
    match log {
        Some(log) => Gateway::start_logged(1, &args, log.path()),
        None => Gateway::start(1, &args),
    }
}

fn closed_connections(gateway: &Gateway) -> f64 {
    sum(&gateway.metrics(), "ringcast_connections_closed_total")
}

/// `PER_MASTER` channel names for each master, by master port.
fn channels_per_master(cluster: &RedisCluster) -> Vec<(u16, String)> {
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let mut found: HashMap<u16, usize> = HashMap::new();
    let mut channels = Vec::new();
    for i in 0..1_000 {
        let name = format!("ch{i}");
        let master = cluster.master_of(cluster.slot(&format!("{PREFIX}{name}")));
        let count = found.entry(master).or_default();
        if *count < PER_MASTER {
            *count += 1;
            channels.push((master, name));
        }
        if channels.len() == masters.len() * PER_MASTER {
            return channels;
        }
    }
    panic!("no channels spread over the masters");
}

fn expect_text(ws: &mut Client, want: &str, who: &str) {
    match next_message(ws, Duration::from_secs(10)).expect("read") {
        Some(Message::Text(text)) => assert_eq!(text.as_str(), want, "{who}"),
        other => panic!("{who}: expected {want}, got {other:?}"),
    }
}

/// Reads (at most 10,000 messages) until `want` arrives.
fn read_until(ws: &mut Client, want: &str, who: &str) {
    for _ in 0..10_000 {
        match next_message(ws, Duration::from_secs(10)).expect("read") {
            Some(Message::Text(text)) if text.as_str() == want => return,
            Some(_) => {}
            None => panic!("{who}: no {want} within 10 s"),
        }
    }
    panic!("{who}: no {want} within 10,000 messages");
}

/// Waits until `port`'s master has `n` shard subscribers of `channel`.
fn wait_shard_subscribers(cluster: &RedisCluster, port: u16, channel: &str, n: i64, secs: u64) {
    let redis_channel = format!("{PREFIX}{channel}");
    cluster.node(port).wait_until(
        &format!("{n} subscribers of {redis_channel} at {port}"),
        secs,
        |r| r.subscribers(&redis_channel, true) == n,
    );
}

/// One publish of the failover phase: channel index, sequence number, HTTP status, when
/// it was asked.
type Published = (usize, u64, u16, Instant);

/// A subscriber read on its own thread: every text it receives, until stopped.
struct Reader {
    got: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start(mut ws: Client) -> Reader {
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (got, stop) = (got.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match next_message(&mut ws, Duration::from_millis(200)) {
                        Ok(Some(Message::Text(text))) => {
                            got.lock().unwrap().push((Instant::now(), text.to_string()));
                        }
                        Ok(_) => {}
                        Err(err) => panic!("a subscriber's connection failed: {err}"),
                    }
                }
            })
        };
        Reader {
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn texts(&self) -> Vec<(Instant, String)> {
        self.got.lock().unwrap().clone()
    }

    fn finish(mut self) -> Vec<(Instant, String)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("reader thread");
        }
        self.texts()
    }
}

#[test]
fn two_gateways_follow_a_slot_migration_and_a_master_failover() {
    let mut cluster = RedisCluster::start(3, 1);
    let url = cluster.url(2);
    // With history in Redis: every publish is the script at the channel's master.
    let history = ["--redis", &url, "--redis-cluster", "--history-size", "100"];
    let a = Gateway::start(1, &history);
    let b = Gateway::start(1, &history);
    for gateway in [&a, &b] {
        gateway.wait_metric("ringcast_broker_up", 30, |up| up == 1.0);
    }
    let channels = channels_per_master(&cluster);

    // One subscriber per channel on each gateway; each node subscribes at the master.
    let mut on_a: Vec<Client> = Vec::new();
    let mut on_b: Vec<Client> = Vec::new();
    for (_, channel) in &channels {
        on_a.push(connect(a.ws_addr(), &format!("/{channel}")));
        on_b.push(connect(b.ws_addr(), &format!("/{channel}")));
    }
    for (master, channel) in &channels {
        wait_shard_subscribers(&cluster, *master, channel, 2, 20);
    }
    // Published through both admin APIs, each message reaches both gateways' subscribers.
    for (i, (_, channel)) in channels.iter().enumerate() {
        assert_eq!(a.publish(channel, format!("from-a-{i}").as_bytes()), 202);
        assert_eq!(b.publish(channel, format!("from-b-{i}").as_bytes()), 202);
        for (ws, who) in [(&mut on_a[i], "A"), (&mut on_b[i], "B")] {
            expect_text(ws, &format!("from-a-{i}"), who);
            expect_text(ws, &format!("from-b-{i}"), who);
        }
    }

    // Slot migration: the first channel's slot moves to another master. Redis
    // unsubscribes the channel at the old master; both nodes subscribe it at the new one.
    let (source, channel) = channels[0].clone();
    let slot = cluster.slot(&format!("{PREFIX}{channel}")).to_string();
    let target = *cluster
        .master_ports()
        .iter()
        .find(|p| **p != source)
        .expect("another master");
    let setslot = |port: u16, args: &[&str]| {
        let mut command: Vec<&[u8]> = vec![b"CLUSTER", b"SETSLOT", slot.as_bytes()];
        command.extend(args.iter().map(|a| a.as_bytes()));
        let reply = cluster.node(port).command(&command);
        assert_eq!(
            reply,
            Reply::Status("OK".into()),
            "SETSLOT {args:?} at {port}"
        );
    };
    // The steps `redis-cli --cluster reshard` takes: IMPORTING, MIGRATING, the slot's keys
    // (the channel's history) moved with MIGRATE, then NODE on both.
    let move_slot = |from: u16, to: u16| {
        let (from_id, to_id) = (cluster.id(from), cluster.id(to));
        setslot(to, &["IMPORTING", &from_id]);
        setslot(from, &["MIGRATING", &to_id]);
        for _ in 0..100 {
            let keys = cluster
                .node(from)
                .command(&[b"CLUSTER", b"GETKEYSINSLOT", slot.as_bytes(), b"100"])
                .strings();
            if keys.is_empty() {
                break;
            }
            let port = to.to_string();
            let mut migrate: Vec<&[u8]> = vec![
                b"MIGRATE",
                b"127.0.0.1",
                port.as_bytes(),
                b"",
                b"0",
                b"5000",
                b"KEYS",
            ];
            migrate.extend(keys.iter().map(|k| k.as_bytes()));
            let reply = cluster.node(from).command(&migrate);
            assert!(
                matches!(&reply, Reply::Status(s) if s == "OK" || s == "NOKEY"),
                "MIGRATE: {reply:?}"
            );
        }
        setslot(to, &["NODE", &to_id]);
        setslot(from, &["NODE", &to_id]);
    };
    let moved_before = rejected(&a, "moved") + rejected(&b, "moved");
    let migrated = Instant::now();
    move_slot(source, target);
    wait_shard_subscribers(&cluster, target, &channel, 2, 20);
    println!(
        "slot migration: both nodes subscribed at the new master {:?} after SETSLOT",
        migrated.elapsed()
    );
    assert_eq!(
        cluster
            .node(source)
            .subscribers(&format!("{PREFIX}{channel}"), true),
        0
    );
    assert!(rejected(&a, "moved") + rejected(&b, "moved") > moved_before);
    assert_eq!(a.publish(&channel, b"after-migration"), 202);
    expect_text(&mut on_a[0], "after-migration", "A after the migration");
    expect_text(&mut on_b[0], "after-migration", "B after the migration");

    // Slot map churn during a publish burst: the slot moves back and forth 4 times while
    // a burst goes through both gateways. Every publish is answered (202, or 503 after a
    // local delivery when a node had no route for a moment), redirections are counted,
    // and delivery works once the churn is over.
    let burst_started = Instant::now();
    let burst = {
        let admins = [a.admin, b.admin];
        let channel = channel.clone();
        std::thread::spawn(move || {
            let mut statuses: HashMap<u16, usize> = HashMap::new();
            for seq in 0..600usize {
                let status = http::post(
                    admins[seq % 2],
                    &format!("/publish/{channel}"),
                    format!("burst-{seq}").as_bytes(),
                )
                .map_or(0, |r| r.status);
                *statuses.entry(status).or_default() += 1;
            }
            statuses
        })
    };
    let moved_before = rejected(&a, "moved") + rejected(&b, "moved");
    let (mut owner, mut other) = (target, source);
    for _ in 0..4 {
        move_slot(owner, other);
        std::mem::swap(&mut owner, &mut other);
        std::thread::sleep(Duration::from_millis(100));
    }
    let statuses = burst.join().expect("burst");
    let burst_took = burst_started.elapsed();
    let moved = rejected(&a, "moved") + rejected(&b, "moved") - moved_before;
    println!(
        "slot map churn: 4 moves during a burst of 600 publishes ({burst_took:?}): statuses \
         {statuses:?}, {moved} redirections counted"
    );
    assert!(
        statuses.keys().all(|s| *s == 202 || *s == 503),
        "{statuses:?}"
    );
    assert!(moved >= 4.0, "{moved}");
    assert_eq!(owner, target);
    wait_shard_subscribers(&cluster, target, &channel, 2, 20);
    assert_eq!(b.publish(&channel, b"after-churn"), 202);
    read_until(&mut on_a[0], "after-churn", "A after the churn");
    read_until(&mut on_b[0], "after-churn", "B after the churn");

    // Failover: publish at a steady rate through both gateways, kill a master by pid.
    let closed_before = [closed_connections(&a), closed_connections(&b)];
    let readers_a: Vec<Reader> = on_a.into_iter().map(Reader::start).collect();
    let readers_b: Vec<Reader> = on_b.into_iter().map(Reader::start).collect();
    let victim = channels
        .iter()
        .map(|(m, _)| *m)
        .find(|m| *m != target && *m != source)
        .expect("a master that took no part in the migration");
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Mutex<Vec<Published>>> = Arc::default();
    let publisher = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let names: Vec<String> = channels.iter().map(|(_, c)| c.clone()).collect();
        let admins = [a.admin, b.admin];
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) && seq < 20_000 {
                let i = seq as usize % names.len();
                let admin = admins[seq as usize % 2];
                let asked = Instant::now();
                let status = http::post(
                    admin,
                    &format!("/publish/{}", names[i]),
                    format!("m-{seq}").as_bytes(),
                )
                .map_or(0, |r| r.status);
                sent.lock().unwrap().push((i, seq, status, asked));
                seq += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let killed = Instant::now();
    cluster.node_mut(victim).kill();
    // Resumed once a message published after the kill reached every subscriber of the
    // killed master's channels on both gateways.
    let published_after_kill = |text: &str| {
        let seq: Option<u64> = text.strip_prefix("m-").and_then(|s| s.parse().ok());
        sent.lock()
            .unwrap()
            .iter()
            .any(|(_, s, _, at)| Some(*s) == seq && *at > killed)
    };
    let victim_channels: Vec<usize> = channels
        .iter()
        .enumerate()
        .filter(|(i, (m, _))| *m == victim && *i != 0)
        .map(|(i, _)| i)
        .collect();
    assert!(!victim_channels.is_empty());
    let deadline = killed + Duration::from_secs(30);
    let resumed_after = |readers: &[Reader]| -> Option<Duration> {
        let mut latest = Duration::ZERO;
        for i in &victim_channels {
            let first = readers[*i]
                .texts()
                .into_iter()
                .find(|(_, text)| published_after_kill(text))?;
            latest = latest.max(first.0 - killed);
        }
        Some(latest)
    };
    let (resumed_a, resumed_b) = loop {
        if let (Some(ra), Some(rb)) = (resumed_after(&readers_a), resumed_after(&readers_b)) {
            break (ra, rb);
        }
        assert!(
            Instant::now() < deadline,
            "delivery did not resume within 30 s of the kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // Keep publishing a little past the resume, then count.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
    std::thread::sleep(Duration::from_millis(500));
    // Checked while the subscribers are still connected (finishing a reader closes it).
    // The promoted replica serves the victim's channels: both nodes subscribed there.
    for i in &victim_channels {
        let channel = &channels[*i].1;
        let master = cluster.master_of(cluster.slot(&format!("{PREFIX}{channel}")));
        assert_ne!(master, victim);
        wait_shard_subscribers(&cluster, master, channel, 2, 10);
    }
    for (gateway, before) in [(&a, closed_before[0]), (&b, closed_before[1])] {
        let metrics = gateway.metrics();
        let closed: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("ringcast_connections_closed_total") && !l.ends_with(" 0"))
            .collect();
        assert_eq!(
            closed_connections(gateway),
            before,
            "no client was dropped: {closed:?}"
        );
    }
    let got_a: Vec<BTreeSet<String>> = readers_a
        .into_iter()
        .map(|r| r.finish().into_iter().map(|(_, t)| t).collect())
        .collect();
    let got_b: Vec<BTreeSet<String>> = readers_b
        .into_iter()
        .map(|r| r.finish().into_iter().map(|(_, t)| t).collect())
        .collect();
    let sent = sent.lock().unwrap().clone();
    let accepted: Vec<_> = sent.iter().filter(|(_, _, s, _)| *s == 202).collect();
    let refused = sent.len() - accepted.len();
    let mut lost = [0usize; 2];
    for (i, seq, _, _) in &accepted {
        for (g, got) in [&got_a, &got_b].iter().enumerate() {
            if !got[*i].contains(&format!("m-{seq}")) {
                lost[g] += 1;
            }
        }
    }
    println!(
        "cluster failover: master {victim} killed; delivery resumed on A after {resumed_a:?}, \
         on B after {resumed_b:?}; {} publishes ({} accepted, {refused} refused with 503 while \
         their slot had no master); accepted but lost: A {}, B {}",
        sent.len(),
        accepted.len(),
        lost[0],
        lost[1]
    );
    for gateway in [&a, &b] {
        gateway.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
        assert!(rejected(gateway, "disconnect") >= 1.0);
        assert!(sum(&gateway.metrics(), "ringcast_broker_reconnects_total") >= 1.0);
    }
    // A node that never saw the channel reads its history from the promoted master.
    let c = Gateway::start(1, &history);
    c.wait_metric("ringcast_broker_up", 30, |up| up == 1.0);
    let (_, channel) = &channels[victim_channels[0]];
    let mut late = connect(c.ws_addr(), &format!("/{channel}?since=last"));
    match next_message(&mut late, Duration::from_secs(10)).expect("read") {
        Some(Message::Text(text)) => assert!(text.starts_with("m-"), "{text}"),
        other => panic!("no history from the promoted master: {other:?}"),
    }
}

#[test]
fn dead_seeds_and_a_cluster_that_answers_clusterdown_are_counted_and_retried() {
    // A one-node cluster that owns half the slots: CLUSTER SLOTS answers, and with
    // sharded pub/sub not allowed while the cluster is down, SSUBSCRIBE and SPUBLISH on
    // its slots get CLUSTERDOWN (the other half has no master).
    let dir = std::env::temp_dir().join(format!("ringcast-clusterdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let node = RedisServer::start_with(RedisOptions {
        cluster_dir: Some(dir.clone()),
        ..RedisOptions::default()
    });
    assert_eq!(
        node.command(&[b"CLUSTER", b"ADDSLOTSRANGE", b"0", b"8191"]),
        Reply::Status("OK".into())
    );
    assert_eq!(
        node.command(&[
            b"CONFIG",
            b"SET",
            b"cluster-allow-pubsubshard-when-down",
            b"no"
        ]),
        Reply::Status("OK".into())
    );
    let dead_seed = free_port();
    let down_log = GatewayLog::new("redis-cluster-topology", "clusterdown");
    let url = format!("redis://127.0.0.1:{dead_seed},127.0.0.1:{}", node.port);
    let down = cluster_gateway(&url, Some(&down_log));
    let all_dead = [free_port(), free_port()];
    let dead_log = GatewayLog::new("redis-cluster-topology", "dead");
    let dead_url = format!(
        "redis://127.0.0.1:{},127.0.0.1:{}",
        all_dead[0], all_dead[1]
    );
    let dead = cluster_gateway(&dead_url, Some(&dead_log));

    // A channel in the node's half: its subscription is refused with CLUSTERDOWN.
    let channel = (0..1_000)
        .map(|i| format!("ch{i}"))
        .find(|c| {
            node.command(&[b"CLUSTER", b"KEYSLOT", format!("{PREFIX}{c}").as_bytes()])
                .int()
                < 8192
        })
        .expect("a channel in the first half");
    let mut ws = connect(down.ws_addr(), &format!("/{channel}"));
    wait_failures(&down, "cluster", 3.0, 20);
    wait_failures(&dead, "cluster", 2.0, 20);
    assert!(
        rejected(&down, "connect") >= 1.0,
        "the dead seed is counted"
    );
    assert!(rejected(&dead, "connect") >= 2.0);
    let text = down_log.wait_for("did not answer with the slot map", 10);
    assert!(text.contains(&format!("127.0.0.1:{dead_seed}")), "{text}");
    let text = dead_log.wait_for("no Redis Cluster node answered", 10);
    for port in all_dead {
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    }
    // Alive and serving local clients meanwhile: the publish is refused by Redis (or
    // finds no master) and delivered here only.
    assert_eq!(down.publish(&channel, b"local-only"), 503);
    expect_text(
        &mut ws,
        "local-only",
        "local delivery while the cluster is down",
    );
    let mut local = connect(dead.ws_addr(), "/local");
    assert_eq!(dead.publish("local", b"local-only"), 503);
    expect_text(&mut local, "local-only", "local delivery without any seed");
    assert_eq!(broker_up(&dead), 0.0);

    // The cluster is repaired: the node comes up, subscribes and carries publishes.
    assert_eq!(
        node.command(&[b"CLUSTER", b"ADDSLOTSRANGE", b"8192", b"16383"]),
        Reply::Status("OK".into())
    );
    down.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    node.wait_until("the node subscribed", 20, |r| {
        r.subscribers(&format!("{PREFIX}{channel}"), true) == 1
    });
    assert_eq!(down.publish(&channel, b"through-the-cluster"), 202);
    expect_text(
        &mut ws,
        "through-the-cluster",
        "delivery once the cluster is up",
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
