//! Handshakes: requests split anywhere (and parsed once however trickled), HTTP errors
//! for bad or oversized requests, the handshake timeout, capacity counted from accept with
//! the node-wide spare pool (503), the handshake budget (503 + `Retry-After`), the per-IP
//! rate (429), and the token and origin rules.

use crate::node::{MASK, Node};
use ringcast_proto::{Decoder, Message, OpCode, Role, client_request, encode_frame, generate_key};
use ringcast_shard::{Action, RecvEnd};

#[test]
fn handshake_and_frame_split_in_every_place_still_echo() {
    let mut node = Node::new(1, |_| {});
    let id = node.accept(0);
    let mut bytes = client_request("localhost", "/echo", &generate_key(9));
    encode_frame(&mut bytes, OpCode::Text, b"split me", MASK);
    for b in bytes.chunks(1) {
        node.send_bytes(0, id, b);
    }
    let wire = node.take_wire(0, id);
    let end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut rest = wire[end..].to_vec();
    let mut got = Vec::new();
    Decoder::new(Role::Client, 1024)
        .feed(&mut rest, &mut |m| {
            if let Message::Text(p) = m {
                got.push(p.to_vec())
            }
        })
        .unwrap();
    assert_eq!(got, vec![b"split me".to_vec()]);
}

#[test]
fn bad_handshakes_get_http_errors_and_close() {
    let cases: &[(&[u8], &str)] = &[
        (b"POST /news HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 405"),
        (b"\x16\x03\x01garbage\r\n\r\n", "HTTP/1.1 400"),
        (
            b"GET /news HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "HTTP/1.1 426",
        ),
        (
            b"GET /bad%20chan HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "HTTP/1.1 400",
        ),
    ];
    for (request, status) in cases {
        let mut node = Node::new(1, |_| {});
        let id = node.accept(0);
        node.send_bytes(0, id, request);
        let wire = node.take_wire(0, id);
        assert!(
            wire.starts_with(status.as_bytes()),
            "{status}: {}",
            String::from_utf8_lossy(&wire)
        );
        assert!(node.has_action(0, |a| matches!(a, Action::ShutdownWrite(_))));
        node.shards[0].on_recv_end(id, RecvEnd::Eof);
        node.pump();
        assert!(node.has_action(0, |a| matches!(a, Action::Close(_))));
        assert_eq!(node.shards[0].connections(), 0);
        assert_eq!(
            node.shards[0].counters().closed_count("handshake_failed"),
            1
        );
    }
}

#[test]
fn oversized_handshake_is_rejected() {
    let mut node = Node::new(1, |_| {});
    let id = node.accept(0);
    let mut request = b"GET /news HTTP/1.1\r\nHost: x\r\n".to_vec();
    while request.len() < 9000 {
        request.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    node.send_bytes(0, id, &request);
    assert!(node.take_wire(0, id).starts_with(b"HTTP/1.1 431"));
}

#[test]
fn unfinished_handshake_times_out() {
    let mut node = Node::new(1, |c| c.handshake_timeout_ms = 300);
    let id = node.accept(0);
    node.send_bytes(0, id, b"GET /news HTTP/1.1\r\n");
    node.advance(250);
    assert_eq!(node.shards[0].connections(), 1);
    node.advance(100);
    assert_eq!(node.shards[0].connections(), 0);
    assert_eq!(
        node.shards[0].counters().closed_count("handshake_timeout"),
        1
    );
}

#[test]
fn full_shard_answers_503() {
    let mut node = Node::new(1, |c| c.max_connections = 2);
    node.connect(0, "/a");
    node.connect(0, "/b");
    let id = node.accept(0);
    node.send_bytes(0, id, &client_request("x", "/c", &generate_key(1)));
    assert!(node.take_wire(0, id).starts_with(b"HTTP/1.1 503"));
}

#[test]
fn connections_over_the_per_ip_rate_get_429() {
    let mut node = Node::new(1, |c| c.connect_rate_per_ip = 3);
    node.peer = Some([127, 0, 0, 9].into());
    for _ in 0..3 {
        node.connect(0, "/news");
    }
    let id = node.accept(0);
    assert!(node.take_wire(0, id).starts_with(b"HTTP/1.1 429"));
    node.peer = Some([127, 0, 0, 10].into());
    node.connect(0, "/news");
    node.peer = Some([127, 0, 0, 9].into());
    node.advance(400);
    node.connect(0, "/news");
}

fn token_node() -> Node {
    Node::new(1, |c| {
        c.auth = ringcast_shard::AuthPolicy::new(
            vec!["https://*.example.com".into()],
            Some(b"s3cret".to_vec()),
        );
        c.unix_ms_at_zero = 1_000_000;
    })
}

fn handshake_answer(node: &mut Node, request: &str) -> String {
    let id = node.accept(0);
    node.send_bytes(0, id, request.as_bytes());
    String::from_utf8_lossy(&node.take_wire(0, id)).into_owned()
}

fn request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

#[test]
fn tokens_and_origins_gate_the_handshake() {
    let mut node = token_node();
    let token = ringcast_shard::mint_token(b"s3cret", &["news".into()], 2_000).expect("valid");
    let answer = handshake_answer(&mut node, &request(&format!("/news?token={token}"), ""));
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let answer = handshake_answer(&mut node, &request("/news", ""));
    assert!(answer.starts_with("HTTP/1.1 401"), "no token: {answer}");
    let answer = handshake_answer(&mut node, &request(&format!("/sport?token={token}"), ""));
    assert!(
        answer.starts_with("HTTP/1.1 403"),
        "other channel: {answer}"
    );
    let forged = ringcast_shard::mint_token(b"guess", &["news".into()], 2_000).expect("valid");
    let answer = handshake_answer(&mut node, &request(&format!("/news?token={forged}"), ""));
    assert!(answer.starts_with("HTTP/1.1 401"), "forged: {answer}");
    let origin = "Origin: https://evil.org\r\n";
    let answer = handshake_answer(&mut node, &request(&format!("/news?token={token}"), origin));
    assert!(answer.starts_with("HTTP/1.1 403"), "origin: {answer}");
    let protocol = format!(
        "Sec-WebSocket-Protocol: chat, token.{token}\r\nOrigin: https://app.example.com\r\n"
    );
    let answer = handshake_answer(&mut node, &request("/news", &protocol));
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        answer.contains(&format!("Sec-WebSocket-Protocol: token.{token}\r\n")),
        "{answer}"
    );
    node.advance(1_000_001);
    let answer = handshake_answer(&mut node, &request(&format!("/news?token={token}"), ""));
    assert!(answer.starts_with("HTTP/1.1 401"), "expired: {answer}");
    assert_eq!(
        node.shards[0]
            .counters()
            .handshake_failed_count("token_expired"),
        1
    );
}

#[test]
fn a_request_trickled_one_byte_at_a_time_is_parsed_once() {
    let mut node = Node::new(1, |_| {});
    let id = node.accept(0);
    let mut request = b"GET /echo HTTP/1.1\r\nHost: x\r\n".to_vec();
    let filler = format!("X-Filler: {}\r\n", "a".repeat(500));
    while request.len() < 7600 {
        request.extend_from_slice(filler.as_bytes());
    }
    let tail = format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}\r\n\r\n",
        generate_key(3)
    );
    request.extend_from_slice(tail.as_bytes());
    assert!(request.len() > 7 * 1024 && request.len() < 8 * 1024);
    for b in request.chunks(1) {
        node.send_bytes(0, id, b);
    }
    assert!(node.take_wire(0, id).starts_with(b"HTTP/1.1 101"));
    assert_eq!(node.shards[0].handshake_parses(), 1);
}

#[test]
fn a_request_in_one_receive_is_parsed_once_and_its_frames_still_echo() {
    let mut node = Node::new(1, |_| {});
    let id = node.accept(0);
    let mut bytes = client_request("localhost", "/echo", &generate_key(9));
    encode_frame(&mut bytes, OpCode::Text, b"same receive", MASK);
    node.send_bytes(0, id, &bytes);
    assert_eq!(node.shards[0].handshake_parses(), 1);
    let wire = node.take_wire(0, id);
    let end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(wire[end..].ends_with(b"same receive"));
}

#[test]
fn connections_are_counted_from_accept_and_refused_without_reading() {
    let mut node = Node::new(1, |c| c.max_connections = 2);
    let first = node.accept(0);
    node.accept(0);
    let third = node.accept(0);
    let wire = String::from_utf8_lossy(&node.take_wire(0, third)).into_owned();
    assert!(wire.starts_with("HTTP/1.1 503"), "{wire}");
    assert_eq!(
        node.shards[0]
            .counters()
            .handshake_failed_count("server_full"),
        1
    );
    node.shards[0].on_recv_end(first, RecvEnd::Eof);
    node.pump();
    let fourth = node.accept(0);
    assert!(
        node.take_wire(0, fourth).is_empty(),
        "a freed slot is reused"
    );
}

#[test]
fn a_shard_over_its_share_borrows_from_the_node_pool() {
    let pool = ringcast_shard::SpareSlots::new(3);
    let mut node = Node::new(2, |c| {
        c.max_connections = 0;
        c.spare_connections = pool.clone();
    });
    let ids: Vec<_> = (0..3).map(|_| node.connect(0, "/news")).collect();
    let refused = node.accept(1);
    assert!(node.take_wire(1, refused).starts_with(b"HTTP/1.1 503"));
    node.shards[0].on_recv_end(ids[0], RecvEnd::Eof);
    node.pump();
    node.connect(1, "/news");
    let refused = node.accept(0);
    assert!(node.take_wire(0, refused).starts_with(b"HTTP/1.1 503"));
}

#[test]
fn handshakes_over_the_budget_get_503_with_a_jittered_retry_after() {
    let mut node = Node::new(1, |c| c.handshakes_per_sec = 5);
    for _ in 0..5 {
        node.connect(0, "/news");
    }
    let mut waits = Vec::new();
    for _ in 0..20 {
        let id = node.accept(0);
        let wire = String::from_utf8_lossy(&node.take_wire(0, id)).into_owned();
        assert!(wire.starts_with("HTTP/1.1 503"), "{wire}");
        let secs: u64 = wire
            .lines()
            .find_map(|l| l.strip_prefix("Retry-After: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("Retry-After");
        assert!((1..=5).contains(&secs), "{secs}");
        waits.push(secs);
    }
    waits.sort_unstable();
    waits.dedup();
    assert!(waits.len() >= 3, "jittered: {waits:?}");
    assert_eq!(
        node.shards[0]
            .counters()
            .handshake_failed_count("handshake_budget"),
        20
    );
    node.advance(200);
    node.connect(0, "/news");
}

#[test]
fn an_empty_line_before_the_request_line_waits_for_the_real_end() {
    let mut node = Node::new(1, |_| {});
    let id = node.accept(0);
    node.send_bytes(0, id, b"\r\n\r\n");
    assert!(node.take_wire(0, id).is_empty());
    node.send_bytes(0, id, &client_request("x", "/echo", &generate_key(4)));
    let wire = String::from_utf8_lossy(&node.take_wire(0, id)).into_owned();
    assert!(wire.starts_with("HTTP/1.1 101"), "{wire}");
}

#[test]
fn bytes_that_cannot_start_a_request_are_refused_without_waiting() {
    let mut node = Node::new(1, |_| {});
    let id = node.accept(0);
    node.send_bytes(0, id, b"\x16\x03\x01\x00\xa5\x01");
    assert!(node.take_wire(0, id).starts_with(b"HTTP/1.1 400"));
}
