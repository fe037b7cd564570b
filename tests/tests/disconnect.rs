//! The admin API's disconnect end to end (real gateways, real `redis-server`, tokens
//! minted by `jsonwebtoken` as a backend would, tungstenite and raw sockets as clients):
//! `POST /disconnect` with the admin token closes one user's connections (WebSocket
//! close 4003, the last SSE event) or one channel's subscribers and answers how many,
//! leaves everyone else connected, refuses a request without the token (401) and any
//! other body (400, counted); with two nodes on one Redis, a disconnect sent to node A
//! closes the matching connections on node B too, in every `--redis-mode`, and a
//! malformed control message is counted and ignored.

use jsonwebtoken::{EncodingKey, Header, encode};
use ringcast_tests::gateway::Gateway;
use ringcast_tests::http;
use ringcast_tests::metrics::sum_where;
use ringcast_tests::redis_server::RedisServer;
use ringcast_tests::ws_client::{Client, connect, connect_raw, next_message, wait_labelled};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tungstenite::Message;

const SECRET: &str = "a JWT secret of at least thirty-two bytes";
const ADMIN_TOKEN: &str = "disconnect-test-admin-token";

/// A JWT for `sub` allowing every channel for ten minutes.
fn token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({"sub": sub, "channels": ["*"], "exp": now + 600});
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::default(), &claims, &key).expect("encode")
}

/// A gateway with JWTs and the admin token, plus `extra` flags.
fn gateway(extra: &[&str]) -> Gateway {
    let mut args = vec!["--jwt-secret", SECRET, "--admin-token", ADMIN_TOKEN];
    args.extend_from_slice(extra);
    Gateway::start(1, &args)
}

/// `POST path` on the admin port with `body` (and the admin token when `authorised`);
/// the status and the body.
fn post(gateway: &Gateway, path: &str, authorised: bool, body: &[u8]) -> (u16, String) {
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let mut headers = vec![("Content-Type", "application/json")];
    if authorised {
        headers.push(("Authorization", &bearer));
    }
    let answer = http::request_with(gateway.admin, "POST", path, &headers, body).expect("POST");
    (answer.status, answer.body)
}

/// `POST /disconnect` with the admin token; the 200 answer.
fn disconnect(gateway: &Gateway, request: &Value) -> Value {
    let (status, body) = post(gateway, "/disconnect", true, request.to_string().as_bytes());
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON answer")
}

/// Asserts `ws` is closed with 4003 `disconnected` (messages queued before the
/// disconnect still come first).
fn assert_disconnected(ws: &mut Client, who: &str) {
    loop {
        match next_message(ws, Duration::from_secs(5)) {
            Ok(Some(Message::Text(_) | Message::Binary(_))) => {}
            Ok(Some(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 4003, "{who}: {frame:?}");
                assert_eq!(frame.reason.as_str(), "disconnected", "{who}");
                return;
            }
            other => panic!("{who} was not disconnected: {other:?}"),
        }
    }
}

/// Whether `ws` (subscribed to `channel`) still receives: publishes markers through
/// `publisher` until one arrives (a node's Redis subscription may lag its client's).
fn still_receives(publisher: &Gateway, channel: &str, ws: &mut Client) -> bool {
    for k in 0..25 {
        let marker = format!("alive-{k}");
        let (status, body) = post(
            publisher,
            &format!("/publish/{channel}"),
            true,
            marker.as_bytes(),
        );
        assert_eq!(status, 202, "{body}");
        match next_message(ws, Duration::from_millis(200)) {
            Ok(Some(Message::Text(text))) if text.starts_with("alive-") => return true,
            Ok(None) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    false
}

fn closed_disconnected(gateway: &Gateway) -> f64 {
    sum_where(
        &gateway.metrics(),
        "ringcast_connections_closed_total",
        Some(("reason", "disconnected")),
    )
}

#[test]
fn a_users_connections_are_closed_and_counted_and_everyone_else_stays() {
    let gateway = gateway(&[]);
    let alice = token("alice");
    let bob = token("bob");
    let mut alices: Vec<Client> = (0..3)
        .map(|_| connect(gateway.ws_addr(), &format!("/news?token={alice}")))
        .collect();
    let mut alice_sse = connect_raw(gateway.ws_addr());
    let request = format!("GET /sse/news?token={alice} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    alice_sse
        .write_all(request.as_bytes())
        .expect("SSE request");
    let head = ringcast_tests::ws_client::read_head(&mut alice_sse).expect("SSE head");
    assert_eq!(head.status, 200, "{}", head.text);
    let mut bobs: Vec<Client> = (0..2)
        .map(|_| connect(gateway.ws_addr(), &format!("/news?token={bob}")))
        .collect();

    // Guarded like every write, and only one sub or one channel is a request.
    let sub = br#"{"sub":"alice"}"#;
    assert_eq!(post(&gateway, "/disconnect", false, sub).0, 401);
    let long_sub = json!({ "sub": "x".repeat(257) }).to_string();
    let bad: [&[u8]; 6] = [
        b"alice",
        br#"{}"#,
        br#"{"sub":"alice","channel":"news"}"#,
        br#"{"sub":""}"#,
        long_sub.as_bytes(),
        br#"{"channel":"not a channel"}"#,
    ];
    for body in bad {
        let (status, answer) = post(&gateway, "/disconnect", true, body);
        assert_eq!(status, 400, "{answer}");
        let answer: Value = serde_json::from_str(&answer).expect("JSON error");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let refused = |reason| {
        sum_where(
            &gateway.metrics(),
            "ringcast_admin_refused_total",
            Some(("reason", reason)),
        )
    };
    assert_eq!(refused("bad_disconnect"), 6.0);
    assert_eq!(refused("unauthorized"), 1.0);
    assert_eq!(closed_disconnected(&gateway), 0.0, "nothing closed so far");

    // Every connection of alice's, on whichever shard, WebSocket and SSE alike.
    assert_eq!(
        disconnect(&gateway, &json!({"sub": "alice"})),
        json!({"disconnected": 4})
    );
    for (i, ws) in alices.iter_mut().enumerate() {
        assert_disconnected(ws, &format!("alice {i}"));
    }
    let mut events = String::new();
    alice_sse
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    alice_sse
        .read_to_string(&mut events)
        .expect("the stream ends");
    assert!(
        events.ends_with("event: disconnected\ndata: disconnected\n\n"),
        "{events:?}"
    );
    for ws in &mut bobs {
        assert!(still_receives(&gateway, "news", ws), "bob was cut off");
    }
    wait_labelled(
        &gateway,
        "ringcast_connections_closed_total",
        ("reason", "disconnected"),
        5,
        |n| n == 4.0,
    );
    assert_eq!(
        disconnect(&gateway, &json!({"sub": "alice"})),
        json!({"disconnected": 0})
    );

    // By channel: every subscriber of it, whoever they are.
    assert_eq!(
        disconnect(&gateway, &json!({"channel": "news"})),
        json!({"disconnected": 2})
    );
    for (i, ws) in bobs.iter_mut().enumerate() {
        assert_disconnected(ws, &format!("bob {i}"));
    }
    wait_labelled(
        &gateway,
        "ringcast_connections_closed_total",
        ("reason", "disconnected"),
        5,
        |n| n == 6.0,
    );
}

/// Two nodes on one Redis in `mode`; `request` sent to node A must close alice's
/// connections on both (alice subscribes to `news`, bob on B to `sport`).
fn across_the_cluster(mode: &str, request: &Value) {
    let redis = RedisServer::start();
    let url = redis.url();
    let flags = ["--redis", url.as_str(), "--redis-mode", mode];
    let a = gateway(&flags);
    let b = gateway(&flags);
    for node in [&a, &b] {
        node.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    }
    let alice = token("alice");
    let mut alice_a = connect(a.ws_addr(), &format!("/news?token={alice}"));
    let mut alices_b: Vec<Client> = (0..2)
        .map(|_| connect(b.ws_addr(), &format!("/news?token={alice}")))
        .collect();
    let mut bob_b = connect(b.ws_addr(), &format!("/sport?token={}", token("bob")));
    assert!(
        still_receives(&b, "sport", &mut bob_b),
        "bob never received"
    );

    // A counts only its own; B closes its share on A's word.
    assert_eq!(disconnect(&a, request), json!({"disconnected": 1}));
    assert_disconnected(&mut alice_a, "alice on A");
    for (i, ws) in alices_b.iter_mut().enumerate() {
        assert_disconnected(ws, &format!("alice {i} on B"));
    }
    assert!(still_receives(&b, "sport", &mut bob_b), "bob was cut off");
    let closed = ("reason", "disconnected");
    wait_labelled(&a, "ringcast_connections_closed_total", closed, 5, |n| {
        n == 1.0
    });
    wait_labelled(&b, "ringcast_connections_closed_total", closed, 5, |n| {
        n == 2.0
    });

    // Both nodes listen to the control channel; nonsense there is counted and ignored.
    assert_eq!(
        redis.publish("ringcast:#control", b"disconnect everyone"),
        2
    );
    for node in [&a, &b] {
        let envelope = ("reason", "envelope");
        wait_labelled(node, "ringcast_broker_rejected_total", envelope, 5, |n| {
            n == 1.0
        });
    }
    assert!(still_receives(&b, "sport", &mut bob_b), "bob was cut off");
    assert_eq!(closed_disconnected(&a), 1.0);
    assert_eq!(closed_disconnected(&b), 2.0);
}

#[test]
fn a_disconnect_sent_to_one_node_closes_the_users_connections_on_every_node() {
    across_the_cluster("interest", &json!({"sub": "alice"}));
}

#[test]
fn a_channel_disconnect_reaches_every_node_in_pattern_mode() {
    across_the_cluster("pattern", &json!({"channel": "news"}));
}

#[test]
fn a_disconnect_reaches_every_node_in_sharded_mode() {
    across_the_cluster("sharded", &json!({"sub": "alice"}));
}
