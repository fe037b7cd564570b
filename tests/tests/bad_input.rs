//! Bad input against the real gateway: broken handshakes, slowloris, protocol errors
//! after the upgrade, clients vanishing mid-frame, silent clients (ping timeout) and a
//! full server, each answered correctly and counted, while a healthy subscriber keeps
//! receiving every message in order.

use ringcast_tests::gateway::Gateway;
use ringcast_tests::ws_client::{
    TEST_KEY, client_frame, closed_by_server, connect, connect_raw, next_message, raw_upgrade,
    read_close_code, send_request, sync_subscriber, try_upgrade, unmasked_frame, upgrade_request,
    wait_labelled,
};
use std::io::Write;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

const CLOSE_WITHIN: Duration = Duration::from_secs(5);
const HANDSHAKE_FAILURES: &str = "ringcast_handshake_failures_total";
const CLOSED: &str = "ringcast_connections_closed_total";

/// A handshake the gateway must refuse: request bytes, status, failure reason label.
struct BadHandshake {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    reason: &'static str,
}

fn request_with(path: &str, method: &str, headers: &[&str]) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

fn bad_handshakes() -> Vec<BadHandshake> {
    let upgrade = ["Upgrade: websocket", "Connection: Upgrade"];
    let key = format!("Sec-WebSocket-Key: {TEST_KEY}");
    let v13 = "Sec-WebSocket-Version: 13";
    let filler = format!("X-Filler: {}", "a".repeat(9 * 1024));
    let mut client_hello = vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03];
    client_hello.extend((0u8..160).map(|i| i.wrapping_mul(37).wrapping_add(11)));
    let long_channel = format!("/{}", "c".repeat(256));
    let case = |name, request, status, reason| BadHandshake {
        name,
        request,
        status,
        reason,
    };
    vec![
        case(
            "POST",
            request_with("/news", "POST", &[upgrade[0], upgrade[1], &key, v13]),
            405,
            "not_get",
        ),
        case(
            "missing key",
            request_with("/news", "GET", &[upgrade[0], upgrade[1], v13]),
            400,
            "missing_key",
        ),
        case(
            "invalid key",
            request_with(
                "/news",
                "GET",
                &[upgrade[0], upgrade[1], "Sec-WebSocket-Key: not-a-key!", v13],
            ),
            400,
            "invalid_key",
        ),
        case(
            "version 8",
            request_with(
                "/news",
                "GET",
                &[upgrade[0], upgrade[1], &key, "Sec-WebSocket-Version: 8"],
            ),
            426,
            "bad_version",
        ),
        case(
            "headers over 8 KiB",
            request_with(
                "/news",
                "GET",
                &[upgrade[0], upgrade[1], &key, v13, &filler],
            ),
            431,
            "too_large",
        ),
        case("TLS ClientHello", client_hello, 400, "malformed"),
        case(
            "bad channel",
            upgrade_request("/bad%20chan").into_bytes(),
            400,
            "bad_channel",
        ),
        case(
            "256-byte channel",
            upgrade_request(&long_channel).into_bytes(),
            400,
            "bad_channel",
        ),
        case(
            "root path",
            upgrade_request("/").into_bytes(),
            404,
            "not_found",
        ),
    ]
}

/// A frame sequence the gateway must answer with a close code, and the close reason.
fn bad_frames() -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let fragmented = [client_frame(0x02, &[7; 600]), client_frame(0x80, &[7; 600])].concat();
    vec![
        ("unmasked", unmasked_frame(0x81, b"hello"), 1002, "unmasked"),
        (
            "invalid UTF-8",
            client_frame(0x81, &[b'o', b'k', 0xff, 0xfe]),
            1007,
            "invalid_utf8",
        ),
        ("too big", client_frame(0x82, &[1; 2000]), 1009, "too_big"),
        ("fragmented too big", fragmented, 1009, "too_big"),
        (
            "reserved opcode",
            client_frame(0x83, b"x"),
            1002,
            "reserved_opcode",
        ),
        ("RSV1", client_frame(0xC1, b"hi"), 1002, "reserved_bits"),
        (
            "long ping",
            client_frame(0x89, &[0; 126]),
            1002,
            "control_too_long",
        ),
    ]
}

fn check_bad_handshake(addr: SocketAddr, case: &BadHandshake) {
    let (mut stream, head) = send_request(addr, &case.request);
    assert_eq!(head.status, case.status, "{}: {}", case.name, head.text);
    if case.status == 426 {
        assert_eq!(
            head.header("Sec-WebSocket-Version"),
            Some("13"),
            "{}",
            case.name
        );
    }
    assert!(
        closed_by_server(&mut stream, CLOSE_WITHIN),
        "{}: socket left open",
        case.name
    );
}

fn check_bad_frame(addr: SocketAddr, name: &str, bytes: &[u8], code: u16) {
    let mut stream = raw_upgrade(addr, "/echo");
    let _ = stream.write_all(bytes);
    assert_eq!(
        read_close_code(&mut stream, CLOSE_WITHIN),
        Some(code),
        "{name}"
    );
    assert!(
        closed_by_server(&mut stream, CLOSE_WITHIN),
        "{name}: socket left open"
    );
}

fn check_slowloris(addr: SocketAddr) {
    let mut stream = send_nothing_more(addr, b"GET /news HT");
    let started = Instant::now();
    assert!(
        closed_by_server(&mut stream, CLOSE_WITHIN),
        "half a request line kept the socket open"
    );
    assert!(started.elapsed() < CLOSE_WITHIN);
}

fn send_nothing_more(addr: SocketAddr, bytes: &[u8]) -> std::net::TcpStream {
    let mut stream = connect_raw(addr);
    stream.write_all(bytes).expect("write partial request");
    stream
}

fn check_vanishing_client(gateway: &Gateway) {
    let before = gateway.wait_metric("ringcast_connections", 15, |v| v == 1.0);
    let mut stream = raw_upgrade(gateway.ws_addr(), "/echo");
    gateway.wait_metric("ringcast_connections", 15, |v| v == before + 1.0);
    stream
        .write_all(&[0x82, 0xFE])
        .expect("half a frame header");
    drop(stream);
    gateway.wait_metric("ringcast_connections", 15, |v| v == before);
}

#[test]
fn abuse_is_refused_while_a_subscriber_keeps_receiving() {
    let gateway = Gateway::start(
        1,
        &[
            "--max-message-bytes",
            "1024",
            "--handshake-timeout",
            "1",
            "--ping-interval",
            "1",
        ],
    );
    let addr = gateway.ws_addr();
    let mut subscriber = connect(addr, "/news");
    sync_subscriber(&gateway, "news", &mut subscriber);

    let mut expected = Vec::new();
    let mut publish = |text: String| {
        assert_eq!(gateway.publish("news", text.as_bytes()), 202);
        expected.push(text);
    };
    for i in 0..20 {
        publish(format!("before-{i}"));
    }
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        while got.last().is_none_or(|last: &String| last != "after-19") {
            let left = deadline.saturating_duration_since(Instant::now());
            match next_message(&mut subscriber, left).expect("subscriber read") {
                Some(Message::Text(text)) => got.push(text.as_str().to_owned()),
                Some(other) => panic!("subscriber got {other:?}"),
                None => break,
            }
        }
        got
    });

    let cases = bad_handshakes();
    for (i, case) in cases.iter().enumerate() {
        check_bad_handshake(addr, case);
        publish(format!("during-handshake-{i}"));
    }
    check_slowloris(addr);
    publish("during-slowloris".to_owned());
    let frames = bad_frames();
    for (i, (name, bytes, code, _)) in frames.iter().enumerate() {
        check_bad_frame(addr, name, bytes, *code);
        publish(format!("during-frame-{i}"));
    }
    check_vanishing_client(&gateway);
    for i in 0..20 {
        publish(format!("after-{i}"));
    }

    let got = reader.join().expect("reader thread");
    assert_eq!(
        got, expected,
        "the healthy subscriber missed or reordered messages"
    );

    for case in &cases {
        let want = cases.iter().filter(|c| c.reason == case.reason).count() as f64;
        wait_labelled(
            &gateway,
            HANDSHAKE_FAILURES,
            ("reason", case.reason),
            10,
            |v| v >= want,
        );
    }
    wait_labelled(&gateway, CLOSED, ("reason", "handshake_timeout"), 10, |v| {
        v >= 1.0
    });
    for (_, _, _, reason) in &frames {
        let want = frames.iter().filter(|f| f.3 == *reason).count() as f64;
        wait_labelled(&gateway, CLOSED, ("reason", reason), 10, |v| v >= want);
    }
}

#[test]
fn silent_clients_time_out_while_ponging_clients_stay() {
    let gateway = Gateway::start(1, &["--ping-interval", "0.5", "--pong-timeout", "0.5"]);
    let addr = gateway.ws_addr();
    let mut healthy = connect(addr, "/alive");
    let reader = thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(4);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if let Some(msg) = next_message(&mut healthy, left).expect("healthy client read") {
                panic!("healthy client got {msg:?}");
            }
        }
        healthy
    });

    let mut silent = raw_upgrade(addr, "/quiet");
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(3)),
        "a client that never answers pings stayed connected"
    );
    gateway.wait_metric("ringcast_ping_timeouts_total", 10, |v| v >= 1.0);

    let mut healthy = reader.join().expect("healthy reader");
    sync_subscriber(&gateway, "alive", &mut healthy);
    gateway.wait_metric("ringcast_pongs_received_total", 10, |v| v >= 1.0);
}

#[test]
fn client_pings_get_pongs_with_the_same_payload() {
    let gateway = Gateway::start(1, &[]);
    let mut ws = connect(gateway.ws_addr(), "/echo");
    for payload in [Vec::new(), b"ping-1".to_vec(), vec![0xAB; 125]] {
        ws.send(Message::Ping(payload.clone().into()))
            .expect("send ping");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "no pong for {} bytes",
                payload.len()
            );
            match ws.read().expect("read pong") {
                Message::Pong(got) => {
                    assert_eq!(got.as_ref(), payload.as_slice());
                    break;
                }
                Message::Ping(_) => {}
                other => panic!("expected a pong, got {other:?}"),
            }
        }
    }
}

#[test]
fn a_full_server_answers_503() {
    let gateway = Gateway::start(1, &["--max-connections", "4"]);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let (mut stream, status) = try_upgrade(gateway.ws_addr(), "/news");
        match status {
            101 => held.push(stream),
            503 => {
                refused += 1;
                assert!(closed_by_server(&mut stream, CLOSE_WITHIN), "503 left open");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        held.len() <= 4,
        "{} connections over a limit of 4",
        held.len()
    );
    assert!(refused >= 1, "no handshake was refused");
    wait_labelled(
        &gateway,
        HANDSHAKE_FAILURES,
        ("reason", "server_full"),
        10,
        |v| v >= refused as f64,
    );
}
