//! `POST /disconnect` over a real loopback listener: guarded like every write (token,
//! Origin), the body read as exactly one `sub` or `channel`, the target handed to this
//! node's disconnector and to the broker for the other nodes, and the answer built from
//! what they report. Every refused body is a counted 400.

mod support;

use std::net::SocketAddr;

use ringcast_admin::{AdminAccess, AdminLimits, AdminToken};
use ringcast_broker::DisconnectTarget;
use ringcast_telemetry::build_recorder;
use serde_json::json;
use support::{Response, Server, exchange};

const TOKEN: &str = "0123456789abcdef-admin";

async fn post(addr: SocketAddr, headers: &str, body: &[u8]) -> Response {
    let head = format!(
        "POST /disconnect HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    exchange(addr, &head, body).await
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

fn refused(text: &str, reason: &str) -> Option<u64> {
    let series = format!("ringcast_admin_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse().ok())
}

async fn metrics(addr: SocketAddr) -> String {
    let head = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(addr, &head, b"").await.text()
}

/// Handlers and connection tasks run on this test's single thread, so a thread-local
/// recorder sees their counters.
#[tokio::test]
async fn a_disconnect_is_guarded_validated_and_answered_with_this_nodes_count() {
    let recorder = build_recorder().unwrap();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let access = AdminAccess {
        token: Some(AdminToken::parse(TOKEN).unwrap()),
        ..AdminAccess::default()
    };
    let server = Server::start_with(handle, access, AdminLimits::default()).await;
    let addr = server.addr;
    assert_eq!(refused(&metrics(addr).await, "bad_disconnect"), Some(0));

    // The write guards come first.
    let sub = br#"{"sub":"alice"}"#;
    let anonymous = post(addr, "", sub).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    let wrong = post(addr, "Authorization: Bearer wrong-token-0123456\r\n", sub).await;
    assert_eq!(wrong.status, 401);
    let cross_site = format!("{}Origin: https://evil.example\r\n", bearer());
    assert_eq!(post(addr, &cross_site, sub).await.status, 403);
    assert!(server.disconnector.targets.lock().unwrap().is_empty());

    // By sub and by channel: this node's count; the broker tells the other nodes.
    let alice = post(addr, &bearer(), sub).await;
    assert_eq!(alice.status, 200, "{}", alice.text());
    assert_eq!(alice.json(), json!({"disconnected": 2}));
    let news = post(addr, &bearer(), br#"{"channel":"news"}"#).await;
    assert_eq!(news.json(), json!({"disconnected": 2}));
    let want = [
        DisconnectTarget::Sub("alice".into()),
        DisconnectTarget::Channel("news".into()),
    ];
    assert_eq!(*server.disconnector.targets.lock().unwrap(), want);
    assert_eq!(*server.broker.disconnects.lock().unwrap(), want);

    // A shard that did not answer in time, and a broker that could not pass it on.
    let slow = post(addr, &bearer(), br#"{"sub":"slow"}"#).await;
    assert_eq!(slow.status, 200);
    assert_eq!(slow.json(), json!({"disconnected": 1, "complete": false}));
    let down = post(addr, &bearer(), br#"{"sub":"down"}"#).await;
    assert_eq!(down.status, 503, "{}", down.text());
    let down = down.json();
    assert_eq!(down["disconnected"], 2);
    assert_eq!(down["cluster"], false);
    assert!(
        down["error"].as_str().unwrap().contains("redis down"),
        "{down}"
    );

    // Anything but one sub or one channel is a counted 400 that reaches nobody.
    let before = server.disconnector.targets.lock().unwrap().len();
    let long_sub = json!({ "sub": "x".repeat(257) }).to_string();
    let huge = vec![b' '; 5_000];
    let bad: [&[u8]; 9] = [
        b"",
        b"alice",
        br#"{"sub":"alice","channel":"news"}"#,
        br#"{"user":"alice"}"#,
        br#"{"sub":7}"#,
        br#"{"sub":""}"#,
        long_sub.as_bytes(),
        br#"{"channel":"no spaces allowed"}"#,
        &huge,
    ];
    for body in bad {
        let answer = post(addr, &bearer(), body).await;
        assert_eq!(answer.status, 400, "{}", answer.text());
        let error = answer.json()["error"].as_str().map(str::to_owned);
        assert!(error.is_some_and(|e| !e.is_empty()), "{}", answer.text());
    }
    assert_eq!(server.disconnector.targets.lock().unwrap().len(), before);
    let text = metrics(addr).await;
    assert_eq!(refused(&text, "bad_disconnect"), Some(9), "{text}");
    assert_eq!(refused(&text, "unauthorized"), Some(2), "{text}");
    assert_eq!(refused(&text, "origin"), Some(1), "{text}");
    server.stop().await;
}
