//! The admin port of the real gateway under attack: a cross-site or DNS-rebound publish,
//! a publish without the admin token, a token too short to start with, idle, half-sent
//! and stalled connections, and hundreds of connections against the cap.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::http;
use ringcast_tests::metrics::sum;
use ringcast_tests::ports::free_port;
use ringcast_tests::programs::binary;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-admin-token-0123456789";

/// `POST /publish/news` with `headers` (each ending in CRLF; a `Host` of the admin
/// address unless they name one); returns the status and the response head.
fn publish_with(addr: SocketAddr, headers: &str) -> (u16, String) {
    let host = if headers.to_ascii_lowercase().contains("host:") {
        String::new()
    } else {
        format!("Host: {addr}\r\n")
    };
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "POST /publish/news HTTP/1.1\r\n{host}{headers}Content-Length: 6\r\nConnection: close\r\n\r\nforged"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response {raw:?}"));
    let head = raw.split_once("\r\n\r\n").map_or(&*raw, |(head, _)| head);
    (status, head.to_owned())
}

/// Whether the server has closed `stream` (EOF, reset, or an answer followed by EOF),
/// without blocking.
fn closed_by_server(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 256];
    let closed = match stream.peek(&mut buf) {
        Ok(_) => true,
        Err(err) => err.kind() != ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).expect("blocking");
    closed
}

#[test]
fn a_cross_site_or_rebound_publish_is_refused_by_default() {
    let gateway = Gateway::start(1, &[]);
    // A form or no-cors fetch from any web page.
    let cross_site = "Origin: https://evil.example\r\nContent-Type: text/plain\r\n";
    assert_eq!(publish_with(gateway.admin, cross_site).0, 403);
    // A page whose own name was rebound to 127.0.0.1: same-origin, so no Origin, but
    // its Host is the page's name.
    assert_eq!(
        publish_with(gateway.admin, "Host: evil.example:9090\r\n").0,
        403
    );
    assert_eq!(
        publish_with(gateway.admin, "").0,
        202,
        "backends still publish"
    );
    for reason in ["origin", "host"] {
        let series = format!("ringcast_admin_refused_total{{reason=\"{reason}\"}} 1");
        let text = gateway.metrics();
        assert!(text.lines().any(|line| line == series), "{series}: {text}");
    }
}

#[test]
fn listed_origins_and_hosts_may_publish() {
    let gateway = Gateway::start(
        1,
        &[
            "--admin-allowed-origins",
            "https://ops.example.com",
            "--admin-allowed-hosts",
            "publisher.internal",
        ],
    );
    let listed = "Origin: https://ops.example.com\r\n";
    assert_eq!(publish_with(gateway.admin, listed).0, 202);
    let other = "Origin: https://ops.example.com.evil.example\r\n";
    assert_eq!(publish_with(gateway.admin, other).0, 403);
    let host = "Host: publisher.internal:9090\r\n";
    assert_eq!(publish_with(gateway.admin, host).0, 202);
}

#[test]
fn publish_needs_the_admin_token_but_health_and_metrics_do_not() {
    let gateway = Gateway::start(1, &["--admin-token", TOKEN]);
    for headers in [
        String::new(),
        "Authorization: Bearer test-admin-token-012345678\r\n".to_owned(),
        format!("Authorization: Basic {TOKEN}\r\n"),
    ] {
        let (status, head) = publish_with(gateway.admin, &headers);
        assert_eq!(status, 401, "{headers}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{head}"
        );
    }
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(publish_with(gateway.admin, &bearer).0, 202);
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            http::get(gateway.admin, path).expect(path).status,
            200,
            "{path}"
        );
    }
    assert_eq!(
        sum(&gateway.metrics(), "ringcast_admin_refused_total"),
        3.0,
        "three unauthorized"
    );
}

#[test]
fn a_short_admin_token_is_refused_at_startup() {
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(binary("ringcast"))
        .args(["--listen", &listen, "--admin", &admin, "--shards", "1"])
        .env("RINGCAST_ADMIN_TOKEN", "too-short")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringcast");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringcast started with a 9-byte admin token");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(stderr.contains("at least 16 bytes"), "{stderr}");
    assert!(
        !stderr.contains("too-short"),
        "the value is not echoed: {stderr}"
    );
}

#[test]
fn idle_half_sent_and_stalled_admin_connections_are_closed() {
    let gateway = Gateway::start(
        1,
        &["--admin-header-timeout", "1", "--admin-idle-timeout", "1"],
    );
    let idle = TcpStream::connect(gateway.admin).expect("connect");
    let mut half_headers = TcpStream::connect(gateway.admin).expect("connect");
    half_headers
        .write_all(b"POST /publish/news HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("write");
    let mut half_body = TcpStream::connect(gateway.admin).expect("connect");
    half_body
        .write_all(
            b"POST /publish/news HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabc",
        )
        .expect("write");
    let started = Instant::now();
    let streams = [
        ("idle", &idle),
        ("half headers", &half_headers),
        ("half body", &half_body),
    ];
    for (name, stream) in streams {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !closed_by_server(stream) {
            assert!(Instant::now() < deadline, "{name} still open after 5 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let mut answer = String::new();
    let _ = half_body.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let text = gateway.metrics();
    let series = "ringcast_admin_refused_total{reason=\"timeout\"} 3";
    assert!(text.lines().any(|line| line == series), "{text}");
}

#[test]
fn admin_connections_over_the_cap_are_refused_at_once() {
    let gateway = Gateway::start(1, &["--admin-max-connections", "8"]);
    let streams: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(gateway.admin).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let open = streams.iter().filter(|s| !closed_by_server(s)).count();
    assert!(open <= 8, "{open} of 300 admin connections still open");
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let text = http::get(gateway.admin, "/metrics")
            .map(|r| r.body)
            .unwrap_or_default();
        let series = text.lines().find_map(|line| {
            line.strip_prefix("ringcast_admin_refused_total{reason=\"over_capacity\"} ")
        });
        if let Some(n) = series.and_then(|n| n.parse::<u64>().ok()) {
            break n;
        }
        assert!(Instant::now() < deadline, "no scrape got through: {text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(refused >= 292, "{refused} refused");
}
