//! Admin HTTP routes over a real loopback listener, with raw HTTP/1.1 requests, in front
//! of a fake broker.

mod support;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use ringcast_admin::{AdminAccess, AdminLimits};
use ringcast_telemetry::build_recorder;
use support::{MAX, Response, Server, exchange};

async fn request(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> Response {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    exchange(addr, &head, body).await
}

/// A server that takes the requests above (`Host: test`) with no token or origin rules.
async fn start(prometheus: metrics_exporter_prometheus::PrometheusHandle) -> Server {
    let access = AdminAccess {
        allowed_hosts: vec!["test".to_owned()],
        ..AdminAccess::default()
    };
    Server::start_with(prometheus, access, AdminLimits::default()).await
}

fn test_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    build_recorder().unwrap().handle()
}

#[tokio::test]
async fn publish_text_is_accepted() {
    let server = start(test_handle()).await;
    let response = request(server.addr, "POST", "/publish/news", b"hello").await;
    assert_eq!(response.status, 202, "{}", response.text());
    assert!(
        response
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    let json = response.json();
    assert_eq!(json["channel"], "news");
    assert_eq!(json["bytes"], 5);
    assert_eq!(json["binary"], false);
    // Nothing else: the route cannot know how many shards or nodes the message reaches.
    assert_eq!(
        json,
        serde_json::json!({ "channel": "news", "bytes": 5, "binary": false })
    );
    assert_eq!(server.broker.calls.load(Ordering::SeqCst), 1);
    let last = server.broker.last.lock().unwrap().clone();
    assert_eq!(
        last,
        Some(("news".to_owned(), Bytes::from_static(b"hello"), false))
    );
    server.stop().await;
}

#[tokio::test]
async fn publish_binary_and_exact_limit_are_accepted() {
    let server = start(test_handle()).await;
    let body = [0xffu8; MAX];
    let response = request(server.addr, "POST", "/publish/bin", &body).await;
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(response.json()["binary"], true);
    assert_eq!(response.json()["bytes"], MAX);

    let response = request(server.addr, "POST", "/publish/empty-body", b"").await;
    assert_eq!(response.status, 202, "{}", response.text());
    assert_eq!(response.json()["bytes"], 0);
    server.stop().await;
}

#[tokio::test]
async fn publish_too_large_is_413() {
    let server = start(test_handle()).await;
    let body = [b'x'; MAX + 1];
    let response = request(server.addr, "POST", "/publish/news", &body).await;
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(response.json()["error"].is_string());
    assert_eq!(server.broker.calls.load(Ordering::SeqCst), 0);
    server.stop().await;
}

#[tokio::test]
async fn publish_bad_or_empty_channel_is_400() {
    let server = start(test_handle()).await;
    // Percent-decoding to invalid UTF-8 (%FF) is a bad channel, not a server error.
    let cases = [
        ("/publish/a+b", "invalid channel name"),
        ("/publish/a%20b", "invalid channel name"),
        ("/publish/%FF", "invalid channel name"),
        ("/publish/", "empty channel name"),
        ("/publish", "body is neither a JSON array nor NDJSON"),
    ];
    for (path, error) in cases {
        let response = request(server.addr, "POST", path, b"x").await;
        assert_eq!(response.status, 400, "{path}");
        assert_eq!(response.json()["error"], error, "{path}");
    }
    // Refused before the broker.
    assert_eq!(server.broker.calls.load(Ordering::SeqCst), 0);
    server.stop().await;
}

#[tokio::test]
async fn publish_unavailable_is_503() {
    let server = start(test_handle()).await;
    let response = request(server.addr, "POST", "/publish/down", b"x").await;
    assert_eq!(response.status, 503);
    assert_eq!(
        response.json()["error"],
        "unavailable: broker unavailable: broker down"
    );
    server.stop().await;
}

#[tokio::test]
async fn publish_delivered_locally_only_is_503_and_says_so() {
    let server = start(test_handle()).await;
    let response = request(server.addr, "POST", "/publish/partial", b"x").await;
    assert_eq!(response.status, 503);
    let body = response.json();
    assert_eq!(body["local_delivery"], true, "{body}");
    assert_eq!(body["remote_delivery"], false, "{body}");
    assert_eq!(body["error"], "delivered locally only: redis down");
    server.stop().await;
}

#[tokio::test]
async fn batch_items_are_checked_once_and_answered_one_by_one() {
    let server = start(test_handle()).await;
    let body = br#"[{"channel":"news","data":"hi"},{"channel":"a b","data":"x"},
        {"channel":"news","data":"seventeen bytes.."},{"channel":"down","data":"x"},
        {"channel":"partial","base64":"/wA="},{"data":"x"}]"#;
    let response = request(server.addr, "POST", "/publish", body).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json(),
        serde_json::json!({
            "published": 1,
            "failed": 5,
            "results": [
                { "channel": "news", "ok": true, "bytes": 2 },
                { "channel": "a b", "error": "invalid channel name" },
                { "channel": "news", "error": "message too large" },
                { "channel": "down", "error": "unavailable: broker unavailable: broker down" },
                { "channel": "partial", "error": "delivered locally only: redis down" },
                { "error": "missing \"channel\"" },
            ],
        })
    );
    // Only the three valid items reached the broker; the last one it took was "news".
    assert_eq!(server.broker.calls.load(Ordering::SeqCst), 3);
    let last = server.broker.last.lock().unwrap().clone();
    assert_eq!(
        last,
        Some(("news".to_owned(), Bytes::from_static(b"hi"), false))
    );
    let response = request(server.addr, "POST", "/publish", b"not a batch").await;
    assert_eq!(response.status, 400);
    assert!(response.json()["error"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn readyz_stays_200_but_degraded_while_the_broker_is_down() {
    let server = start(test_handle()).await;
    server.broker_up.store(false, Ordering::SeqCst);
    let response = request(server.addr, "GET", "/readyz", b"").await;
    assert_eq!(response.status, 200);
    assert!(
        response.text().starts_with("degraded"),
        "{}",
        response.text()
    );
    server.ready.store(false, Ordering::SeqCst);
    let response = request(server.addr, "GET", "/readyz", b"").await;
    assert_eq!(response.status, 503);
    server.ready.store(true, Ordering::SeqCst);
    server.broker_up.store(true, Ordering::SeqCst);
    let response = request(server.addr, "GET", "/readyz", b"").await;
    assert_eq!((response.status, response.text().as_str()), (200, "ready"));
    server.stop().await;
}

#[tokio::test]
async fn healthz_and_readyz() {
    let server = start(test_handle()).await;
    let response = request(server.addr, "GET", "/healthz", b"").await;
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    let response = request(server.addr, "GET", "/readyz", b"").await;
    assert_eq!((response.status, response.text().as_str()), (200, "ready"));
    server.ready.store(false, Ordering::SeqCst);
    let response = request(server.addr, "GET", "/readyz", b"").await;
    assert_eq!(
        (response.status, response.text().as_str()),
        (503, "draining")
    );
    server.ready.store(true, Ordering::SeqCst);
    let response = request(server.addr, "GET", "/readyz", b"").await;
    assert_eq!(response.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn unknown_route_is_404_and_wrong_method_is_405() {
    let server = start(test_handle()).await;
    let response = request(server.addr, "GET", "/nope", b"").await;
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["error"], "not found");
    let response = request(server.addr, "POST", "/publish/a/b", b"x").await;
    assert_eq!(response.status, 404);
    let response = request(server.addr, "GET", "/publish/news", b"").await;
    assert_eq!(response.status, 405);
    assert!(response.json()["error"].is_string());
    let response = request(server.addr, "POST", "/healthz", b"").await;
    assert_eq!(response.status, 405);
    server.stop().await;
}

/// Handlers run on this test's single thread, so a thread-local recorder sees their metrics.
#[tokio::test]
async fn metrics_render_published_counter_and_process_metrics() {
    let recorder = build_recorder().unwrap();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let server = start(handle).await;
    for _ in 0..3 {
        let response = request(server.addr, "POST", "/publish/news", b"hi").await;
        assert_eq!(response.status, 202);
    }
    let response = request(server.addr, "POST", "/publish/a+b", b"hi").await;
    assert_eq!(response.status, 400);

    let response = request(server.addr, "GET", "/metrics", b"").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .head
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        response.head
    );
    let text = response.text();
    assert!(
        text.lines()
            .any(|line| line == "ringcast_messages_published_total 3"),
        "{text}"
    );
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    assert!(text.contains("process_open_fds"), "{text}");
    server.stop().await;
}
