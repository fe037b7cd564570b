//! Fan-out end to end: 5,000 wsload subscribers over five source addresses and four
//! ports land on both shards; 100 messages to each of 10 channels reach every
//! subscriber of the channel exactly once and in order, pings flow meanwhile, and the
//! gateway's /metrics agrees with what the clients saw.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::metrics::{sum, sum_where};
use ringcast_tests::programs::binary;
use ringcast_tests::waits::wait_for_file;
use std::process::{Command, Stdio};
use std::time::Duration;

const CONNS: u64 = 5_000;
const CHANNELS: u64 = 10;
const PER_CHANNEL: u64 = 100;

#[test]
fn every_subscriber_gets_every_message_of_its_channel_once_in_order() {
    let gateway = Gateway::start(4, &["--ping-interval", "1", "--pong-timeout", "5"]);
    let ready = std::env::temp_dir().join(format!("ringcast-fanout-{}.ready", gateway.pid()));
    let _ = std::fs::remove_file(&ready);
    let wsload = Command::new(binary("wsload"))
        .args(["hold", "--url", &gateway.ws_url("/ch-{ch}")])
        .args(["--connections", &CONNS.to_string()])
        .args(["--channels", &CHANNELS.to_string()])
        .args(["--source-ips", "127.0.0.1-127.0.0.5", "--rate", "5000"])
        .args([
            "--duration",
            "90",
            "--expect-messages",
            &PER_CHANNEL.to_string(),
        ])
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting wsload");
    wait_for_file(&ready, 60);

    gateway.wait_metric("ringcast_subscriptions", 30, |n| n == CONNS as f64);
    gateway.wait_metric("ringcast_channels", 30, |n| n == CHANNELS as f64);
    let text = gateway.metrics();
    for shard in ["0", "1"] {
        let n = sum_where(&text, "ringcast_connections", Some(("shard", shard)));
        assert!(
            n > 0.0,
            "shard {shard} holds no connection: subscribers must span shards"
        );
    }
    // Let a couple of ping rounds happen while the connections are held.
    std::thread::sleep(Duration::from_millis(2_500));

    for seq in 0..PER_CHANNEL {
        for ch in 0..CHANNELS {
            let status = gateway.publish(&format!("ch-{ch}"), format!("{seq}:m").as_bytes());
            assert_eq!(status, 202);
        }
    }

    let out = wsload.wait_with_output().expect("wsload output");
    assert!(out.status.success(), "wsload failed: {:?}", out.status);
    let line = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(line.lines().last().expect("report line")).expect("json");
    assert_eq!(report["connected"], CONNS, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["messages"], CONNS * PER_CHANNEL, "{report}");
    assert_eq!(report["seq_gaps"], 0, "{report}");
    assert_eq!(report["seq_dups"], 0, "{report}");
    assert_eq!(report["conns_complete"], CONNS, "{report}");
    assert_eq!(report["closed_by_server"], 0, "{report}");

    let delivered = gateway.wait_metric("ringcast_messages_delivered_total", 10, |n| {
        n >= (CONNS * PER_CHANNEL) as f64
    });
    assert_eq!(delivered, (CONNS * PER_CHANNEL) as f64);
    let text = gateway.metrics();
    assert_eq!(
        sum(&text, "ringcast_messages_published_total"),
        (CHANNELS * PER_CHANNEL) as f64
    );
    assert!(sum(&text, "ringcast_connections_accepted_total") >= CONNS as f64);
    assert!(sum(&text, "ringcast_pings_sent_total") >= CONNS as f64);
    assert!(sum(&text, "ringcast_pongs_received_total") > 0.0);
    assert_eq!(sum(&text, "ringcast_ping_timeouts_total"), 0.0);
    let _ = std::fs::remove_file(&ready);
}
