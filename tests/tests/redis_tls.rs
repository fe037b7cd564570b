//! Redis over TLS and with ACL users (real `redis-server` with a TLS port and the default
//! user off, certificates from the `openssl` CLI, real gateways): a node on
//! `rediss://alice:secret@...` with `--redis-ca` and a node on plain
//! `redis://alice:secret@...` form one cluster; a wrong password or an unknown user keeps
//! the broker down, counted as `auth`, retried with backoff (and it connects once Redis
//! accepts the password), logged with the URL's password hidden; an untrusted
//! certificate, a CA that did not sign it, or a plain Redis behind `rediss://` keep it
//! down, counted as `tls`.

use ringcast_tests::broker_health::{broker_up, rejected, wait_failures};
use ringcast_tests::gateway::Gateway;
use ringcast_tests::gateway_log::GatewayLog;
use ringcast_tests::metrics::sum_where;
use ringcast_tests::pki::{EC, Pki};
use ringcast_tests::redis_server::{RedisOptions, RedisServer};
use ringcast_tests::ws_client::{Client, connect, next_message};
use serde_json::Value;
use std::time::{Duration, Instant};
use tungstenite::Message;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw";

/// A Redis with a TLS port serving a leaf of `pki` for 127.0.0.1, and the ACL user
/// alice instead of the default user.
fn tls_redis(pki: &Pki) -> RedisServer {
    pki.leaf("redis", EC);
    RedisServer::start_with(RedisOptions {
        tls: Some((pki.path("redis.chain.pem"), pki.path("redis.key"))),
        users: vec![(USER.into(), PASSWORD.into())],
        ..RedisOptions::default()
    })
}

/// The least-privilege ACL user README.md shows, for the default prefix with history.
const RINGCAST_USER_RULES: &str = "on >ringcast-pw resetchannels &ringcast:* resetkeys ~{ringcast:* \
    -@all +hello +auth +ping +select +subscribe +unsubscribe +psubscribe +punsubscribe \
    +ssubscribe +sunsubscribe +publish +spublish +evalsha +script|load +multi +exec \
    +hget +hset +hincrby +del +rpush +ltrim +pexpire +lrange";

/// The next JSON object of type `message` (other objects skipped) within 10 s.
fn next_json_message(ws: &mut Client) -> Value {
    loop {
        match next_message(ws, Duration::from_secs(10)).expect("read") {
            Some(Message::Text(text)) => {
                let object: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if object["type"] == "message" {
                    return object;
                }
            }
            other => panic!("expected a message object, got {other:?}"),
        }
    }
}

/// Connects to `path` on `gateway` and waits for the `subscribed` object.
fn subscribe(gateway: &Gateway, path: &str) -> (Client, Value) {
    let mut ws = connect(gateway.ws_addr(), path);
    match next_message(&mut ws, Duration::from_secs(10)).expect("read") {
        Some(Message::Text(text)) => {
            let object: Value = serde_json::from_str(text.as_str()).expect("JSON");
            assert_eq!(object["type"], "subscribed", "{object}");
            (ws, object)
        }
        other => panic!("expected the subscribed object, got {other:?}"),
    }
}

#[test]
fn a_tls_node_and_a_plain_acl_node_form_one_cluster() {
    let pki = Pki::new("redis-cluster");
    let redis = tls_redis(&pki);
    let rules: Vec<&str> = RINGCAST_USER_RULES.split_whitespace().collect();
    let mut set_user = vec!["ACL", "SETUSER", "ringcast"];
    set_user.extend_from_slice(&rules);
    assert_eq!(redis.cli(&set_user).trim(), "OK");
    let ca = pki.path("root.pem").display().to_string();
    let tls_url = redis.tls_url(USER, PASSWORD);
    let plain_url = format!("redis://ringcast:ringcast-pw@127.0.0.1:{}/0", redis.port);
    let history = ["--history-size", "100"];
    let a = Gateway::start(
        1,
        &[&["--redis", &tls_url, "--redis-ca", &ca][..], &history].concat(),
    );
    let b = Gateway::start(1, &[&["--redis", &plain_url][..], &history].concat());
    for node in [&a, &b] {
        node.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    }
    // Node A's connection is alice's, on the TLS port; B's is the ringcast user's.
    let tls_port = redis.tls_port.expect("TLS port");
    let clients = redis.cli(&["CLIENT", "LIST"]);
    let on_tls = clients
        .lines()
        .filter(|line| line.contains(&format!("laddr=127.0.0.1:{tls_port} ")))
        .collect::<Vec<_>>();
    assert!(!on_tls.is_empty(), "{clients}");
    assert!(
        on_tls
            .iter()
            .all(|line| line.contains(&format!("user={USER} "))),
        "{clients}"
    );
    assert!(clients.contains("user=ringcast "), "{clients}");

    // Published on the TLS node, received on the plain one, and the other way round,
    // each through the history script (positions 1 and 2).
    let (mut on_a, _) = subscribe(&a, "/news?format=json");
    let (mut on_b, _) = subscribe(&b, "/news?format=json");
    for node in [&a, &b] {
        node.wait_metric("ringcast_broker_subscriptions", 20, |n| n == 1.0);
    }
    assert_eq!(a.publish("news", b"from the TLS node"), 202);
    for ws in [&mut on_a, &mut on_b] {
        let got = next_json_message(ws);
        assert_eq!(
            (got["data"].as_str(), got["offset"].as_u64()),
            (Some("from the TLS node"), Some(1))
        );
    }
    assert_eq!(b.publish("news", b"from the plain node"), 202);
    for ws in [&mut on_a, &mut on_b] {
        let got = next_json_message(ws);
        assert_eq!(
            (got["data"].as_str(), got["offset"].as_u64()),
            (Some("from the plain node"), Some(2))
        );
    }
    // A channel node B never had: a client resuming there is answered from Redis's
    // history (read as the ringcast user, over the plain port).
    let (mut archive, _) = subscribe(&a, "/archive?format=json");
    a.wait_metric("ringcast_broker_subscriptions", 20, |n| n == 2.0);
    for text in ["first", "second"] {
        assert_eq!(a.publish("archive", text.as_bytes()), 202);
    }
    let epoch = next_json_message(&mut archive)["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    let (mut resumed, subscribed) = subscribe(&b, &format!("/archive?format=json&since={epoch}:0"));
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    for want in ["first", "second"] {
        assert_eq!(next_json_message(&mut resumed)["data"], want);
    }
    for node in [&a, &b] {
        for reason in ["connect", "tls", "auth", "disconnect"] {
            assert_eq!(rejected(node, reason), 0.0, "{reason}");
        }
        assert_eq!(
            sum_where(
                &node.metrics(),
                "ringcast_broker_publish_errors_total",
                None
            ),
            0.0
        );
    }
}

#[test]
fn refused_credentials_keep_the_broker_down_counted_logged_without_the_password() {
    let pki = Pki::new("redis-auth");
    let redis = tls_redis(&pki);
    let ca = pki.path("root.pem").display().to_string();
    let wrong = "wrong-pw-do-not-log";
    let tls_port = redis.tls_port.expect("TLS port");
    let wrong_password = format!("rediss://{USER}:{wrong}@127.0.0.1:{tls_port}/0");
    let unknown_user = format!("redis://mallory:{wrong}@127.0.0.1:{}/0", redis.port);

    let started = Instant::now();
    let log_a = GatewayLog::new("redis-tls", "wrong-password");
    let a = Gateway::start_logged(
        1,
        &["--redis", &wrong_password, "--redis-ca", &ca],
        log_a.path(),
    );
    let log_b = GatewayLog::new("redis-tls", "unknown-user");
    let b = Gateway::start_logged(1, &["--redis", &unknown_user], log_b.path());
    // A user that may log in but not subscribe (Redis 7 gives a new user no channels):
    // NOPERM on the first SUBSCRIBE, counted as auth, and backed off like the others.
    let set_user = [
        "ACL",
        "SETUSER",
        "nochannels",
        "on",
        ">pw",
        "resetchannels",
        "~*",
        "+@all",
    ];
    assert_eq!(redis.cli(&set_user).trim(), "OK");
    let no_channels = format!("redis://nochannels:pw@127.0.0.1:{}/0", redis.port);
    let c = Gateway::start(1, &["--redis", &no_channels]);

    for node in [&a, &b, &c] {
        wait_failures(node, "auth", 3.0, 20);
    }
    // Backoff: 50 ms doubling up to 1.6 s (each delay at least half that), not a
    // tight loop: at most 6 attempts in the first 0.8 s, then one per 0.8 s or more.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    let elapsed = started.elapsed().as_secs_f64();
    for node in [&a, &b, &c] {
        let auth = rejected(node, "auth");
        assert!(
            auth <= 8.0 + elapsed / 0.8,
            "{auth} attempts in {elapsed:.1} s"
        );
        assert_eq!(rejected(node, "tls"), 0.0);
        assert_eq!(rejected(node, "connect"), 0.0);
        assert_eq!(broker_up(node), 0.0);
    }
    // Still serving its own clients meanwhile: a publish is delivered locally, 503.
    let mut ws = connect(a.ws_addr(), "/news");
    a.wait_metric("ringcast_subscriptions", 20, |n| n == 1.0);
    assert_eq!(a.publish("news", b"local only"), 503);
    assert_eq!(
        next_message(&mut ws, Duration::from_secs(10)).expect("read"),
        Some(Message::text("local only"))
    );

    for (log, shown) in [
        (
            &log_a,
            format!("rediss://{USER}:***@127.0.0.1:{tls_port}/0"),
        ),
        (
            &log_b,
            format!("redis://mallory:***@127.0.0.1:{}/0", redis.port),
        ),
    ] {
        let text = log.wait_for("cannot connect to Redis", 10);
        let line = text
            .lines()
            .find(|line| line.contains("cannot connect to Redis"))
            .expect("the line");
        assert!(line.contains(&shown), "{line}");
        assert!(line.contains("reason=auth"), "{line}");
        assert!(line.contains("WRONGPASS"), "{line}");
        assert!(!text.contains(wrong), "the password is in the log:\n{text}");
        assert!(!text.contains("panicked"), "{text}");
    }

    // Once Redis takes the password (a second one for alice), node A connects at its
    // next attempt (at most 1.6 s later) and delivers through Redis again.
    let added = redis.cli(&["ACL", "SETUSER", USER, &format!(">{wrong}")]);
    assert_eq!(added.trim(), "OK");
    a.wait_metric("ringcast_broker_up", 10, |up| up == 1.0);
    a.wait_metric("ringcast_broker_subscriptions", 10, |n| n == 1.0);
    assert_eq!(a.publish("news", b"through Redis"), 202);
    assert_eq!(
        next_message(&mut ws, Duration::from_secs(10)).expect("read"),
        Some(Message::text("through Redis"))
    );
    assert_eq!(broker_up(&b), 0.0, "mallory is still unknown");
    assert_eq!(broker_up(&c), 0.0, "nochannels still may not subscribe");
}

#[test]
fn untrusted_certificates_and_plain_redis_behind_rediss_keep_the_broker_down() {
    let pki = Pki::new("redis-untrusted");
    let redis = tls_redis(&pki);
    let other = Pki::new("redis-other-ca");
    let other_ca = other.path("root.pem").display().to_string();
    let ca = pki.path("root.pem").display().to_string();
    let tls_url = redis.tls_url(USER, PASSWORD);
    let plain_port = format!("rediss://{USER}:{PASSWORD}@127.0.0.1:{}/0", redis.port);

    let log = GatewayLog::new("redis-tls", "untrusted");
    // The server's CA is not among the Mozilla roots.
    let no_ca = Gateway::start_logged(1, &["--redis", &tls_url], log.path());
    // A CA that did not sign the server's certificate.
    let wrong_ca = Gateway::start(1, &["--redis", &tls_url, "--redis-ca", &other_ca]);
    // TLS against Redis's plain port.
    let not_tls = Gateway::start(1, &["--redis", &plain_port, "--redis-ca", &ca]);
    for node in [&no_ca, &wrong_ca, &not_tls] {
        wait_failures(node, "tls", 2.0, 20);
        assert_eq!(rejected(node, "auth"), 0.0);
        assert_eq!(rejected(node, "connect"), 0.0);
    }
    let text = log.wait_for("cannot connect to Redis", 10);
    let line = text
        .lines()
        .find(|line| line.contains("cannot connect to Redis"))
        .expect("the line");
    assert!(line.contains("reason=tls"), "{line}");
    assert!(line.contains("certificate"), "{line}");
    assert!(
        line.contains(&format!(
            "rediss://{USER}:***@127.0.0.1:{}/0",
            redis.tls_port.expect("TLS port")
        )),
        "{line}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    // Only the nodes that completed a TLS handshake reached Redis as clients.
    let clients = redis.cli(&["CLIENT", "LIST"]);
    assert_eq!(
        clients.matches(&format!("user={USER} ")).count(),
        1,
        "only the helper's own connection: {clients}"
    );
}
