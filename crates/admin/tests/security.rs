//! The admin port under attack: cross-site and DNS-rebinding publishes, missing or wrong
//! bearer tokens, idle, half-sent and stalled requests, a client that never reads its
//! answers, and more connections than the cap. Each test is one attack and the answer
//! it must get.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ringcast_admin::{
    AdminAccess, AdminLimits, AdminToken, parse_allowed_host, parse_allowed_origin,
};
use ringcast_telemetry::build_recorder;
use support::{Response, Server, exchange, parse_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "0123456789abcdef-admin";

fn test_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    build_recorder().unwrap().handle()
}

/// A request to `path` with `headers` (each ending in CRLF) and a Host of the server's
/// own address unless `headers` names one.
async fn send(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> Response {
    let host = if headers.to_ascii_lowercase().contains("host:") {
        String::new()
    } else {
        format!("Host: {addr}\r\n")
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\n{host}{headers}Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    exchange(addr, &head, body).await
}

/// Reads until the server closes the connection: `Some(bytes read)` when it did within
/// `within`, `None` when it was still open.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(raw),
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

fn limits(header_ms: u64, idle_ms: u64, max_connections: usize) -> AdminLimits {
    AdminLimits {
        header_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        max_connections,
    }
}

#[tokio::test]
async fn a_cross_site_text_plain_post_is_refused_403() {
    let access = AdminAccess {
        allowed_origins: vec![parse_allowed_origin("https://app.example.com").unwrap()],
        ..AdminAccess::default()
    };
    let server = Server::start_with(test_handle(), access, AdminLimits::default()).await;
    // What a form or fetch(..., {mode: "no-cors"}) on any web page sends.
    let cross_site = "Origin: https://evil.example\r\nContent-Type: text/plain\r\n";
    let response = send(server.addr, "POST", "/publish/news", cross_site, b"forged").await;
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(response.json()["error"], "origin not allowed");
    let response = send(server.addr, "POST", "/publish", cross_site, b"[]").await;
    assert_eq!(response.status, 403, "batch too");
    let opaque = "Origin: null\r\n";
    let response = send(server.addr, "POST", "/publish/news", opaque, b"forged").await;
    assert_eq!(response.status, 403, "sandboxed frames send Origin: null");
    assert_eq!(server.broker.calls.load(Ordering::SeqCst), 0);

    let listed = "Origin: https://app.example.com\r\n";
    let response = send(server.addr, "POST", "/publish/news", listed, b"ok").await;
    assert_eq!(response.status, 202, "{}", response.text());
    let response = send(server.addr, "POST", "/publish/news", "", b"no origin").await;
    assert_eq!(response.status, 202, "no Origin: not a browser");
    // Reads stay open: a page cannot read them without CORS headers anyway.
    let response = send(server.addr, "GET", "/healthz", cross_site, b"").await;
    assert_eq!(response.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_rebound_host_name_is_refused_403() {
    let access = AdminAccess {
        allowed_hosts: vec![parse_allowed_host("publisher.internal").unwrap()],
        ..AdminAccess::default()
    };
    let server = Server::start_with(test_handle(), access, AdminLimits::default()).await;
    // A page on evil.example whose name now resolves to 127.0.0.1 is same-origin with the
    // admin port: the browser sends no Origin for it, but the Host is the page's name.
    for host in [
        "evil.example:9090",
        "evil.example",
        "localhost.evil.example",
        "",
    ] {
        let headers = format!("Host: {host}\r\n");
        let response = send(server.addr, "POST", "/publish/news", &headers, b"x").await;
        assert_eq!(response.status, 403, "{host}: {}", response.text());
        assert_eq!(response.json()["error"], "host not allowed", "{host}");
    }
    assert_eq!(server.broker.calls.load(Ordering::SeqCst), 0);
    for host in [
        "127.0.0.1:9090",
        "10.1.2.3",
        "[::1]:9090",
        "localhost:9090",
        "LOCALHOST",
        "publisher.internal:9090",
        "Publisher.Internal",
    ] {
        let headers = format!("Host: {host}\r\n");
        let response = send(server.addr, "POST", "/publish/news", &headers, b"x").await;
        assert_eq!(response.status, 202, "{host}: {}", response.text());
    }
    let response = send(
        server.addr,
        "GET",
        "/metrics",
        "Host: evil.example\r\n",
        b"",
    )
    .await;
    assert_eq!(response.status, 200, "reads stay open");
    server.stop().await;
}

#[tokio::test]
async fn publish_needs_the_bearer_token_and_health_and_metrics_do_not() {
    let access = AdminAccess {
        token: Some(AdminToken::parse(TOKEN).unwrap()),
        ..AdminAccess::default()
    };
    let server = Server::start_with(test_handle(), access, AdminLimits::default()).await;
    let wrong = format!("Authorization: Bearer {TOKEN}x\r\n");
    let prefix = format!("Authorization: Bearer {}\r\n", &TOKEN[..TOKEN.len() - 1]);
    let basic = "Authorization: Basic YWRtaW46YWRtaW4=\r\n".to_owned();
    for headers in [String::new(), wrong, prefix, basic] {
        for path in ["/publish/news", "/publish"] {
            let response = send(server.addr, "POST", path, &headers, b"x").await;
            assert_eq!(response.status, 401, "{headers}{path}: {}", response.text());
            assert_eq!(
                response.header("www-authenticate").as_deref(),
                Some("Bearer")
            );
            assert_eq!(response.json()["error"], "unauthorized");
        }
    }
    // Any write is guarded, not only the routes that exist today.
    for (method, path) in [("PUT", "/channels/news"), ("DELETE", "/publish/news")] {
        let response = send(server.addr, method, path, "", b"").await;
        assert_eq!(response.status, 401, "{method} {path}");
    }
    assert_eq!(server.broker.calls.load(Ordering::SeqCst), 0);
    for scheme in ["Bearer", "bearer"] {
        let headers = format!("Authorization: {scheme} {TOKEN}\r\n");
        let response = send(server.addr, "POST", "/publish/news", &headers, b"x").await;
        assert_eq!(response.status, 202, "{}", response.text());
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = send(server.addr, "GET", path, "", b"").await;
        assert_eq!(response.status, 200, "{path}");
    }
    server.stop().await;
}

#[test]
fn short_tokens_and_origins_without_a_scheme_are_refused() {
    for short in ["", "x", "fifteen-bytes.."] {
        assert!(AdminToken::parse(short).is_err(), "{short:?}");
    }
    assert!(AdminToken::parse("sixteen-bytes...").is_ok());
    let token = AdminToken::parse(TOKEN).unwrap();
    assert!(
        !format!("{token:?}").contains(TOKEN),
        "Debug hides the token"
    );
    for bad in [
        "app.example.com",
        "https://",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://*.example.com",
        "null",
        "*",
    ] {
        assert!(parse_allowed_origin(bad).is_err(), "{bad}");
    }
    assert_eq!(
        parse_allowed_origin("HTTPS://App.Example.com:8443").unwrap(),
        "https://app.example.com:8443"
    );
    for bad in ["", "https://x", "x/y", "x:80", "a b"] {
        assert!(parse_allowed_host(bad).is_err(), "{bad}");
    }
    assert_eq!(
        parse_allowed_host("Publisher.Internal").unwrap(),
        "publisher.internal"
    );
}

#[tokio::test]
async fn idle_and_half_sent_headers_are_closed_at_the_header_timeout() {
    let server = Server::start_with(
        test_handle(),
        AdminAccess::default(),
        limits(300, 5_000, 16),
    )
    .await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"POST /publish/news HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // Kept alive after a response, then silent: idle as well.
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    for (name, stream) in [
        ("idle", &mut idle),
        ("half-sent", &mut half),
        ("kept", &mut kept),
    ] {
        let closed = read_until_closed(stream, Duration::from_secs(3)).await;
        assert!(closed.is_some(), "{name} connection still open after 3 s");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.broker.calls.load(Ordering::SeqCst), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_cut_off_at_the_idle_timeout() {
    let server = Server::start_with(
        test_handle(),
        AdminAccess::default(),
        limits(5_000, 300, 16),
    )
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /publish/news HTTP/1.1\r\nHost: {}\r\nContent-Length: 10\r\n\r\nabc",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let closed = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    let raw = closed.expect("a stalled upload is still open after 3 s");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    if !raw.is_empty() {
        let response = parse_response(&raw);
        assert_eq!(response.status, 408, "{}", response.text());
    }
    assert_eq!(server.broker.calls.load(Ordering::SeqCst), 0);
    server.stop().await;
}

/// Runs on the test's single thread, so a thread-local recorder sees the server's
/// counters.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_at_the_idle_timeout() {
    let recorder = build_recorder().unwrap();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let server = Server::start_with(
        handle.clone(),
        AdminAccess::default(),
        limits(5_000, 300, 16),
    )
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // Far more pipelined answers than the socket buffers hold, and nobody reading them.
    const REQUESTS: usize = 100_000;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    let writes = tokio::spawn(async move {
        for _ in 0..REQUESTS {
            if writer.write_all(request.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    // Wait until the server gave up on this client (its stalled write counted as a
    // timeout), however long filling the buffers takes on a busy machine; bounded.
    let timed_out = |text: &str| {
        text.lines().any(|l| {
            l.starts_with("ringcast_admin_refused_total{reason=\"timeout\"} ") && !l.ends_with(" 0")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !timed_out(&handle.render()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Now read: a server still blocked on this client would go on answering every
    // request; one that gave up has closed the connection after a few buffers' worth.
    let mut answered = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                tail.extend_from_slice(&buf[..n]);
                answered += tail.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
                let keep = tail.len().saturating_sub(11);
                tail.drain(..keep);
            }
        }
    }
    writes.abort();
    assert!(
        answered < REQUESTS / 2,
        "{answered} of {REQUESTS} answered to a non-reader"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_connection_over_the_cap_is_refused_at_once() {
    let server = Server::start_with(
        test_handle(),
        AdminAccess::default(),
        limits(10_000, 10_000, 4),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Let the server accept them all before the one over the cap.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(server.addr).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    let _ = over.write_all(request.as_bytes()).await;
    let raw = read_until_closed(&mut over, Duration::from_secs(1))
        .await
        .expect("the connection over the cap is still open after 1 s");
    if !raw.is_empty() {
        let response = parse_response(&raw);
        assert_eq!(response.status, 503, "{}", response.text());
    }
    // A slot freed is a slot taken again.
    drop(held.pop());
    let mut answered = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let response = send(server.addr, "GET", "/healthz", "", b"").await;
        if response.status == 200 {
            answered = Some(response);
            break;
        }
    }
    assert!(
        answered.is_some(),
        "no slot freed after a held connection closed"
    );
    server.stop().await;
}

/// Handlers and connection tasks run on this test's single thread, so a thread-local
/// recorder sees their counters.
#[tokio::test]
async fn refusals_are_counted_by_reason_and_exported_from_startup() {
    let recorder = build_recorder().unwrap();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let access = AdminAccess {
        token: Some(AdminToken::parse(TOKEN).unwrap()),
        ..AdminAccess::default()
    };
    let server = Server::start_with(handle, access, limits(200, 200, 2)).await;
    let counter = |text: &str, reason: &str| {
        let series = format!("ringcast_admin_refused_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .map(|value| value.trim().to_owned())
    };
    let text = send(server.addr, "GET", "/metrics", "", b"").await.text();
    for reason in [
        "unauthorized",
        "origin",
        "host",
        "over_capacity",
        "timeout",
        "tls_handshake",
        "bad_disconnect",
    ] {
        assert_eq!(
            counter(&text, reason).as_deref(),
            Some("0"),
            "{reason}: {text}"
        );
    }
    let authorised = format!("Authorization: Bearer {TOKEN}\r\n");
    send(server.addr, "POST", "/publish/news", "", b"x").await;
    let origin = format!("{authorised}Origin: https://evil.example\r\n");
    send(server.addr, "POST", "/publish/news", &origin, b"x").await;
    let host = format!("{authorised}Host: evil.example\r\n");
    send(server.addr, "POST", "/publish/news", &host, b"x").await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(3))
            .await
            .is_some()
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut over = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        read_until_closed(&mut over, Duration::from_secs(1))
            .await
            .is_some()
    );
    drop(held);
    // The held ones time out too; then a slot is free for the scrape.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let text = send(server.addr, "GET", "/metrics", "", b"").await.text();
    assert_eq!(
        counter(&text, "unauthorized").as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(counter(&text, "origin").as_deref(), Some("1"), "{text}");
    assert_eq!(counter(&text, "host").as_deref(), Some("1"), "{text}");
    assert_eq!(
        counter(&text, "over_capacity").as_deref(),
        Some("1"),
        "{text}"
    );
    let timeouts: u64 = counter(&text, "timeout").unwrap().parse().unwrap();
    assert!(timeouts >= 1, "{text}");
    server.stop().await;
}
