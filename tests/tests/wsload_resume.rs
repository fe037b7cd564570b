//! `wsload --resume` across a rolling restart, the short version of
//! `tests/bench/rolling_restart.py` (5,000 clients as there, fewer messages): Redis, two
//! gateway nodes A and B (plus a third that only takes publishes), 5,000
//! `wsload hold --resume` subscribers over 20 channels spread over A and B, one
//! publisher at a fixed rate. A is drained (its clients move to B), started again in
//! place, then B is drained (everyone moves to A) and started again. wsload checks every
//! offset of every connection across its reconnections: nothing lost, nothing repeated,
//! every resumption recovered.

mod wsload_support;

use ringcast_tests::gateway::Gateway;
use ringcast_tests::redis_server::RedisServer;
use ringcast_tests::waits::wait_for_file;
use std::time::Duration;
use wsload_support::{Run, num, temp_path};

const CLIENTS: u64 = 5000;
const CHANNELS: u64 = 20;
/// Messages per channel: 20 × 60 at 200/s is 6 s of publishing.
const PER_CHANNEL: u64 = 60;

fn node(redis: &RedisServer) -> Gateway {
    let url = redis.url();
    let gateway = Gateway::start(1, &node_args(&url));
    gateway.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    gateway
}

fn node_args(redis_url: &str) -> [&str; 6] {
    [
        "--redis",
        redis_url,
        "--history-size",
        "1000",
        "--drain-seconds",
        "2",
    ]
}

/// Drains `gateway` (SIGTERM), waits for it to exit and starts it again on its ports.
fn roll(gateway: Gateway, redis: &RedisServer) -> Gateway {
    let mut old = gateway;
    old.signal(libc::SIGTERM);
    assert!(old.wait_exit(15).is_some(), "the node drained and exited");
    let url = redis.url();
    let new = old.start_again(&node_args(&url));
    new.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    new
}

#[test]
fn resuming_subscribers_lose_and_repeat_nothing_across_a_rolling_restart() {
    let redis = RedisServer::start();
    let entry = node(&redis);
    let a = node(&redis);
    let b = node(&redis);
    let ready = temp_path("resume-ready");
    let urls = format!("{},{}", a.ws_url("/roll-{ch}"), b.ws_url("/roll-{ch}"));
    let (connections, channels, expect) = (
        CLIENTS.to_string(),
        CHANNELS.to_string(),
        PER_CHANNEL.to_string(),
    );
    let hold = Run::start(&[
        "hold",
        "--resume",
        "--url",
        &urls,
        "--connections",
        &connections,
        "--channels",
        &channels,
        "--expect-messages",
        &expect,
        "--duration",
        "60",
        "--ready-file",
        ready.to_str().expect("utf-8 path"),
    ]);
    wait_for_file(&ready, 30);
    let count = (CHANNELS * PER_CHANNEL).to_string();
    let admin = format!("http://{}", entry.admin);
    let publisher = Run::start(&[
        "publish",
        "--admin",
        &admin,
        "--channel-prefix",
        "roll-",
        "--channels",
        &channels,
        "--count",
        &count,
        "--rate",
        "200",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    let a = roll(a, &redis);
    let b = roll(b, &redis);
    let published = publisher.report(60);
    assert_eq!(num(&published, "published"), CHANNELS * PER_CHANNEL);
    let report = hold.report(90);
    let resume = &report["resume"];
    assert_eq!(num(&report, "failed"), 0, "{report}");
    assert_eq!(num(&report, "closed_by_server"), 0, "{report}");
    assert_eq!(num(&report, "seq_gaps"), 0, "nothing lost: {report}");
    assert_eq!(num(&report, "seq_dups"), 0, "nothing repeated: {report}");
    assert_eq!(num(resume, "not_recovered"), 0, "{report}");
    assert_eq!(num(&report, "conns_complete"), CLIENTS, "{report}");
    // Half the clients started on A and moved twice (A's drain, then B's), the other
    // half once (B's drain). Every resumption recovered, also those that reached a node
    // a message behind the one they left.
    assert!(num(resume, "server_closes") >= CLIENTS * 3 / 2, "{report}");
    assert_eq!(
        num(resume, "recovered"),
        num(resume, "server_closes"),
        "{report}"
    );
    assert_eq!(num(resume, "caught_up"), num(resume, "server_closes"));
    drop((a, b));
}
