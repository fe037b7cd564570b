//! The cluster at a small scale (the 50,000-connection version is
//! `tests/bench/redis_cluster.sh`): three gateway processes behind one Redis, three wsload
//! processes from different source addresses holding 3,000 subscribers each over 10
//! channels; numbered publishes through Redis reach every subscriber on every node exactly
//! once and in order.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::metrics::sum;
use ringcast_tests::programs::binary;
use ringcast_tests::redis_server::RedisServer;
use ringcast_tests::waits::wait_for_file;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODES: usize = 3;
const PER_NODE: u64 = 3_000;
const CHANNELS: u64 = 10;
const PER_CHANNEL: u64 = 5;

fn hold(gateway: &Gateway, source_ip: &str, ready: &Path) -> Child {
    Command::new(binary("wsload"))
        .args(["hold", "--url", &gateway.ws_url("/ch-{ch}")])
        .args(["--connections", &PER_NODE.to_string()])
        .args(["--channels", &CHANNELS.to_string()])
        .args(["--source-ips", source_ip, "--rate", "3000"])
        .args(["--duration", "60"])
        .args(["--expect-messages", &PER_CHANNEL.to_string()])
        .arg("--ready-file")
        .arg(ready)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting wsload")
}

#[test]
fn three_nodes_and_three_load_processes_get_every_message_once_in_order() {
    let redis = RedisServer::start();
    let url = redis.url();
    let gateways: Vec<Gateway> = (0..NODES)
        .map(|_| Gateway::start(2, &["--redis", &url]))
        .collect();
    let ready: Vec<PathBuf> = gateways
        .iter()
        .map(|g| std::env::temp_dir().join(format!("ringcast-redis-scale-{}.ready", g.pid())))
        .collect();
    let loads: Vec<Child> = gateways
        .iter()
        .zip(&ready)
        .enumerate()
        .map(|(i, (gateway, ready))| {
            let _ = std::fs::remove_file(ready);
            hold(gateway, &format!("127.0.0.{}", i + 2), ready)
        })
        .collect();
    for file in &ready {
        wait_for_file(file, 60);
    }
    for gateway in &gateways {
        gateway.wait_metric("ringcast_subscriptions", 30, |n| n == PER_NODE as f64);
        gateway.wait_metric("ringcast_broker_up", 10, |up| up == 1.0);
    }
    redis.wait_until("every node subscribed to every channel", 20, |r| {
        (0..CHANNELS).all(|ch| r.subscribers(&format!("ringcast:ch-{ch}"), false) == NODES as i64)
    });

    let started = Instant::now();
    for seq in 0..PER_CHANNEL {
        for ch in 0..CHANNELS {
            let receivers = redis.publish(
                &format!("ringcast:ch-{ch}"),
                format!("{seq}:scale").as_bytes(),
            );
            assert_eq!(receivers, NODES as i64);
        }
    }
    let total = NODES as u64 * PER_NODE * PER_CHANNEL;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let delivered: f64 = gateways
            .iter()
            .map(|g| sum(&g.metrics(), "ringcast_messages_delivered_total"))
            .sum();
        if delivered >= total as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {delivered} of {total} delivered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{total} deliveries ({} connections on {NODES} nodes) within {:?} of the first publish",
        NODES as u64 * PER_NODE,
        started.elapsed()
    );

    for load in loads {
        let out = load.wait_with_output().expect("wsload output");
        assert!(out.status.success(), "wsload failed: {:?}", out.status);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value =
            serde_json::from_str(stdout.lines().last().expect("report line")).expect("json");
        assert_eq!(report["connected"], PER_NODE, "{report}");
        assert_eq!(report["messages"], PER_NODE * PER_CHANNEL, "{report}");
        assert_eq!(report["seq_gaps"], 0, "{report}");
        assert_eq!(report["seq_dups"], 0, "{report}");
        assert_eq!(report["conns_complete"], PER_NODE, "{report}");
        assert_eq!(report["closed_by_server"], 0, "{report}");
    }
    for file in &ready {
        let _ = std::fs::remove_file(file);
    }
}
