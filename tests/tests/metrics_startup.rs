//! Every counter with known label values is on /metrics from startup, at 0, before
//! anything happened: each close and handshake-failure reason of each shard, each admin
//! refusal, the publish counter, and with `--redis` every broker counter and rejection
//! reason (a node without Redis exports no broker series). `increase()` and
//! absent-alerts need the series to exist before the first event.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::redis_server::RedisServer;
use std::time::{Duration, Instant};

const CLOSE_REASONS: [&str; 27] = [
    "handshake_aborted",
    "handshake_timeout",
    "handshake_failed",
    "peer_gone",
    "reset",
    "client_close",
    "ping_timeout",
    "slow_consumer",
    "shutdown",
    "poll_done",
    "poll_timeout",
    "token_expired",
    "disconnected",
    "unmasked",
    "reserved_bits",
    "reserved_opcode",
    "fragmented_control",
    "control_too_long",
    "unexpected_continuation",
    "expected_continuation",
    "bad_close_length",
    "bad_close_code",
    "invalid_utf8",
    "too_big",
    "non_minimal_length",
    "length_overflow",
    "bad_compressed_data",
];

const HANDSHAKE_FAILURES: [&str; 20] = [
    "not_get",
    "not_http11",
    "malformed",
    "too_large",
    "not_upgrade",
    "bad_version",
    "missing_key",
    "invalid_key",
    "missing_host",
    "bad_channel",
    "not_found",
    "origin",
    "missing_token",
    "bad_token",
    "token_expired",
    "channel_not_allowed",
    "too_many_channels",
    "rate_limited",
    "server_full",
    "bad_since",
];

const ADMIN_REFUSALS: [&str; 7] = [
    "unauthorized",
    "origin",
    "host",
    "over_capacity",
    "timeout",
    "tls_handshake",
    "bad_disconnect",
];

const BROKER_REJECTIONS: [&str; 11] = [
    "too_large",
    "channel",
    "envelope",
    "malformed",
    "disconnect",
    "connect",
    "tls",
    "auth",
    "sentinel",
    "cluster",
    "moved",
];

/// The value of the one sample of `name` carrying every label in `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        let have: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
        let all = labels
            .iter()
            .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()));
        (metric == name && all).then(|| value.parse().ok())?
    })
}

/// Every (metric, labels) a fresh two-shard gateway must export at 0.
fn expected_zeros(with_broker: bool) -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    let mut want = Vec::new();
    for shard in ["0", "1"] {
        for reason in CLOSE_REASONS {
            let labels = vec![("shard", shard), ("reason", reason)];
            want.push(("ringcast_connections_closed_total", labels));
        }
        for reason in HANDSHAKE_FAILURES {
            let labels = vec![("shard", shard), ("reason", reason)];
            want.push(("ringcast_handshake_failures_total", labels));
        }
    }
    for reason in ADMIN_REFUSALS {
        want.push(("ringcast_admin_refused_total", vec![("reason", reason)]));
    }
    want.push(("ringcast_messages_published_total", vec![]));
    if with_broker {
        for name in [
            "ringcast_broker_reconnects_total",
            "ringcast_broker_messages_received_total",
            "ringcast_broker_publish_errors_total",
            "ringcast_broker_subscriptions",
        ] {
            want.push((name, vec![]));
        }
        for reason in BROKER_REJECTIONS {
            want.push(("ringcast_broker_rejected_total", vec![("reason", reason)]));
        }
    }
    want
}

/// Scrapes until every expected series is there (the shards flush once as they start,
/// which may come a moment after /healthz answers), at most 2 s; asserts each is 0.
fn assert_all_zero_from_startup(gateway: &Gateway, with_broker: bool) -> String {
    let want = expected_zeros(with_broker);
    let deadline = Instant::now() + Duration::from_secs(2);
    let text = loop {
        let text = gateway.metrics();
        let present = want
            .iter()
            .all(|(name, labels)| sample(&text, name, labels).is_some());
        if present || Instant::now() >= deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let wrong: Vec<String> = want
        .iter()
        .filter_map(|(name, labels)| {
            let got = sample(&text, name, labels);
            (got != Some(0.0)).then(|| format!("{name}{labels:?} = {got:?}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} series not at 0 from startup:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    text
}

#[test]
fn every_known_reason_is_exported_at_zero_from_startup() {
    let gateway = Gateway::start(1, &[]);
    let text = assert_all_zero_from_startup(&gateway, false);
    assert!(
        !text.contains("ringcast_broker_"),
        "a node without Redis has no broker series"
    );
}

#[test]
fn broker_counters_are_exported_at_zero_from_startup_with_redis() {
    let redis = RedisServer::start();
    let gateway = Gateway::start(1, &["--redis", &redis.url()]);
    let text = assert_all_zero_from_startup(&gateway, true);
    assert!(
        sample(&text, "ringcast_broker_up", &[]).is_some(),
        "ringcast_broker_up missing"
    );
}
