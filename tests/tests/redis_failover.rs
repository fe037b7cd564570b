//! Redis dies under two gateways and comes back on the same port: the nodes keep every
//! client, report `ringcast_broker_up 0` and a degraded (but 200) `/readyz`, a publish
//! meanwhile answers 503 yet reaches the publishing node's own subscribers, and once Redis
//! is back every channel is resubscribed within 2 s and delivery resumes.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::http;
use ringcast_tests::metrics::{sum, sum_where};
use ringcast_tests::redis_server::RedisServer;
use ringcast_tests::ws_client::{Client, connect, next_message};
use std::time::{Duration, Instant};
use tungstenite::Message;

fn node(redis: &RedisServer) -> Gateway {
    let url = redis.url();
    let gateway = Gateway::start(1, &["--redis", &url]);
    gateway.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    gateway
}

fn expect_text(ws: &mut Client, want: &str, who: &str) {
    match next_message(ws, Duration::from_secs(10)).expect("read") {
        Some(Message::Text(text)) => assert_eq!(text.as_str(), want, "{who}"),
        other => panic!("{who}: expected {want}, got {other:?}"),
    }
}

fn expect_nothing(ws: &mut Client, who: &str) {
    let got = next_message(ws, Duration::from_millis(300)).expect("read");
    assert!(got.is_none(), "{who}: unexpected {got:?}");
}

fn closed_connections(gateway: &Gateway) -> f64 {
    sum(&gateway.metrics(), "ringcast_connections_closed_total")
}

#[test]
fn delivery_resumes_after_redis_restarts_and_no_client_is_dropped() {
    let mut redis = RedisServer::start();
    let a = node(&redis);
    let b = node(&redis);
    let mut on_a = connect(a.ws_addr(), "/news");
    let mut on_b = connect(b.ws_addr(), "/news");
    redis.wait_until("both nodes subscribed", 20, |r| {
        r.subscribers("ringcast:news", false) == 2
    });
    assert_eq!(redis.publish("ringcast:news", b"0:before"), 2);
    expect_text(&mut on_a, "0:before", "A before");
    expect_text(&mut on_b, "0:before", "B before");
    let closed_before = [closed_connections(&a), closed_connections(&b)];

    redis.kill();
    for gateway in [&a, &b] {
        gateway.wait_metric("ringcast_broker_up", 20, |up| up == 0.0);
        let ready = http::get(gateway.admin, "/readyz").expect("readyz");
        assert_eq!(ready.status, 200, "clients are still served");
        assert!(ready.body.starts_with("degraded"), "{}", ready.body);
    }
    let answer = http::post(a.admin, "/publish/news", b"1:while-down").expect("publish");
    assert_eq!(answer.status, 503, "{}", answer.body);
    let body: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
    assert_eq!(body["local_delivery"], true, "{body}");
    assert_eq!(body["remote_delivery"], false, "{body}");
    expect_text(
        &mut on_a,
        "1:while-down",
        "A's own subscriber while Redis is down",
    );
    expect_nothing(&mut on_b, "B while Redis is down");

    redis.restart();
    let back = Instant::now();
    redis.wait_until("both nodes resubscribed within 2 s", 2, |r| {
        r.subscribers("ringcast:news", false) == 2
    });
    eprintln!(
        "resubscribed {:?} after Redis answered PING again",
        back.elapsed()
    );
    for gateway in [&a, &b] {
        gateway.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
        let ready = http::get(gateway.admin, "/readyz").expect("readyz");
        assert_eq!((ready.status, ready.body.as_str()), (200, "ready"));
    }
    assert_eq!(b.publish("news", b"2:after"), 202);
    expect_text(&mut on_a, "2:after", "A after");
    expect_text(&mut on_b, "2:after", "B after");
    expect_nothing(&mut on_a, "A");
    expect_nothing(&mut on_b, "B");

    for (gateway, closed) in [(&a, closed_before[0]), (&b, closed_before[1])] {
        assert_eq!(
            closed_connections(gateway),
            closed,
            "no client was disconnected"
        );
        let text = gateway.metrics();
        assert!(sum(&text, "ringcast_broker_reconnects_total") >= 1.0);
        assert!(
            sum_where(
                &text,
                "ringcast_broker_rejected_total",
                Some(("reason", "disconnect"))
            ) >= 1.0
        );
    }
    assert_eq!(
        sum(&a.metrics(), "ringcast_broker_publish_errors_total"),
        1.0
    );
}

#[test]
fn a_node_started_before_redis_connects_when_it_appears() {
    let mut redis = RedisServer::start();
    redis.kill();
    let url = redis.url();
    let a = Gateway::start(1, &["--redis", &url]);
    assert_eq!(sum(&a.metrics(), "ringcast_broker_up"), 0.0);
    let mut ws = connect(a.ws_addr(), "/late");
    assert_eq!(a.publish("late", b"local-only"), 503);
    expect_text(&mut ws, "local-only", "local delivery without Redis");
    redis.restart();
    a.wait_metric("ringcast_broker_up", 20, |up| up == 1.0);
    redis.wait_until("the node subscribed", 5, |r| {
        r.subscribers("ringcast:late", false) == 1
    });
    assert_eq!(redis.publish("ringcast:late", b"from-redis"), 1);
    expect_text(&mut ws, "from-redis", "delivery once Redis is there");
}
