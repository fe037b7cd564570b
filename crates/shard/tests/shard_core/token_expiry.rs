//! Token expiry after the handshake: a WebSocket is closed with 4001 at its token's
//! `exp`, an event stream ends with a `token_expired` event, a held long poll is answered
//! 401; each is counted as `closed{reason="token_expired"}`. Tokens far beyond the timer
//! wheel's span still fire on time.

use crate::node::{Node, close_code, plain_get, wire_text};
use ringcast_proto::OpCode;
use ringcast_shard::{Action, AuthPolicy, mint_token};

const SECRET: &[u8] = b"a secret of at least thirty-two bytes";
/// Unix time (ms) when the fake clock reads 0.
const UNIX_MS_AT_ZERO: u64 = 1_700_000_000_000;

fn node() -> Node {
    Node::new(1, |c| {
        c.auth = AuthPolicy::new(vec![], Some(SECRET.to_vec()));
        c.unix_ms_at_zero = UNIX_MS_AT_ZERO;
        c.poll_timeout_ms = 30_000;
    })
}

/// A token for `news` that expires `secs` after the start of the fake clock.
fn token(secs: u64) -> String {
    mint_token(SECRET, &["news".into()], UNIX_MS_AT_ZERO / 1000 + secs).expect("valid names")
}

fn expired_closes(node: &Node) -> u64 {
    node.shards[0].counters().closed_count("token_expired")
}

#[test]
fn a_websocket_is_closed_with_4001_when_its_token_expires() {
    let mut node = node();
    let id = node.connect(0, &format!("/news?token={}", token(2)));
    node.advance(1_900);
    let early = node.messages(0, id);
    assert_eq!(close_code(&early), None, "closed before exp: {early:?}");
    assert_eq!(expired_closes(&node), 0);
    node.advance(200);
    let msgs = node.messages(0, id);
    assert_eq!(close_code(&msgs), Some(4001), "{msgs:?}");
    let (_, payload) = msgs
        .iter()
        .find(|(op, _)| *op == OpCode::Close)
        .expect("close frame");
    assert_eq!(&payload[..2], &4001u16.to_be_bytes());
    assert_eq!(expired_closes(&node), 1);
    // Closed means gone: a publish reaches it no more.
    node.publish("news", "late");
    assert!(
        !node
            .messages(0, id)
            .iter()
            .any(|(op, _)| *op == OpCode::Text)
    );
}

#[test]
fn a_token_far_beyond_the_wheel_span_still_expires_on_time() {
    let mut node = node();
    // Ten times the wheel's span (about the 30 s ping interval).
    let id = node.connect(0, &format!("/news?token={}", token(300)));
    for _ in 0..299 {
        node.advance(1_000);
        // Keeps the connection alive through its pings.
        node.send_frame(0, id, OpCode::Pong, b"");
    }
    let msgs = node.messages(0, id);
    assert_eq!(close_code(&msgs), None, "closed early: {msgs:?}");
    assert_eq!(expired_closes(&node), 0);
    node.advance(1_100);
    assert_eq!(close_code(&node.messages(0, id)), Some(4001));
    assert_eq!(expired_closes(&node), 1);
}

#[test]
fn an_event_stream_ends_with_a_token_expired_event() {
    let mut node = node();
    let id = plain_get(&mut node, 0, &format!("/sse/news?token={}", token(2)));
    let head = wire_text(&mut node, 0, id);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    node.advance(2_100);
    let tail = wire_text(&mut node, 0, id).replace(": keep-alive\n\n", "");
    assert_eq!(tail, "event: token_expired\ndata: token expired\n\n");
    assert!(node.has_action(0, |a| matches!(a, Action::ShutdownWrite(_))));
    assert_eq!(expired_closes(&node), 1);
}

#[test]
fn a_held_long_poll_is_answered_401_when_its_token_expires() {
    let mut node = node();
    let id = plain_get(&mut node, 0, &format!("/poll/news?token={}", token(2)));
    assert!(node.take_wire(0, id).is_empty(), "held until a message");
    node.advance(2_100);
    let answer = wire_text(&mut node, 0, id);
    assert!(answer.starts_with("HTTP/1.1 401 Unauthorized"), "{answer}");
    assert!(answer.ends_with("token expired\n"), "{answer}");
    assert_eq!(expired_closes(&node), 1);
    assert_eq!(node.shards[0].counters().closed_count("poll_timeout"), 0);
}
