//! The admin API's disconnect (`ShardMsg::Disconnect`) on two shards: by `sub` it closes
//! every WebSocket, event stream and long poll admitted with a token naming that user,
//! and nothing else; by channel every subscriber of the channel. Each gets its
//! transport's last words (close 4003 `disconnected`, `event: disconnected`, `403
//! Forbidden`), is counted as `closed{reason="disconnected"}`, and each shard reports
//! how many it closed.

use crate::node::{Node, close_code, plain_get, wire_text};
use crate::tokens::{SECRET, T0, require_tokens};
use ringcast_proto::OpCode;
use ringcast_shard::{Action, ConnId, DisconnectReport, DisconnectTarget, ShardMsg, mint_token};
use std::sync::{Arc, Mutex};

/// The WebSocket close frame of a disconnect: FIN + close, 14 bytes, 4003, the reason.
const CLOSE_4003: &[u8] = b"\x88\x0e\x0f\xa3disconnected";
const SSE_LAST: &str = "event: disconnected\ndata: disconnected\n\n";

fn node() -> Node {
    Node::new(2, |c| {
        require_tokens(c);
        c.poll_timeout_ms = 30_000;
    })
}

/// A JWT for `sub` allowing every channel for a minute.
fn jwt(sub: &str) -> String {
    crate::tokens::jwt(sub, &["*"], 60)
}

/// Sends `target` to every shard; each shard's count, in shard order.
fn disconnect(node: &mut Node, target: DisconnectTarget) -> Vec<u64> {
    let counts = Arc::new(Mutex::new(Vec::new()));
    for shard in 0..node.shards.len() {
        let counts = counts.clone();
        let report = DisconnectReport::new(move |n| counts.lock().unwrap().push((shard, n)));
        let msg = ShardMsg::Disconnect {
            target: target.clone(),
            report,
        };
        node.shards[shard].on_message(msg, node.now);
        node.pump();
    }
    let mut counts = counts.lock().unwrap().clone();
    counts.sort_unstable();
    assert_eq!(counts.len(), node.shards.len(), "every shard reports once");
    counts.into_iter().map(|(_, n)| n).collect()
}

fn sub(name: &str) -> DisconnectTarget {
    DisconnectTarget::Sub(name.into())
}

fn disconnected(node: &Node, shard: usize) -> u64 {
    node.shards[shard].counters().closed_count("disconnected")
}

/// An open event stream or long poll with nothing sent yet but its head (SSE) or
/// nothing at all (a held poll).
fn plain(node: &mut Node, shard: usize, path: &str) -> ConnId {
    let id = plain_get(node, shard, path);
    let head = wire_text(node, shard, id);
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 200 OK"),
        "{path}: {head}"
    );
    id
}

fn ends_with_4003(node: &mut Node, shard: usize, id: ConnId) -> bool {
    node.take_wire(shard, id).ends_with(CLOSE_4003)
}

/// Whether a publish to `channel` still reaches WebSocket `id` on `shard`.
fn still_open(node: &mut Node, shard: usize, id: ConnId, channel: &str) -> bool {
    node.take_wire(shard, id);
    node.publish(channel, "still here");
    node.messages(shard, id)
        .iter()
        .any(|(op, payload)| *op == OpCode::Text && payload == b"still here")
}

#[test]
fn by_sub_closes_every_connection_of_that_user_and_only_those() {
    let mut node = node();
    let alice = jwt("alice");
    let bob = jwt("bob");
    let alice_ws0 = node.connect(0, &format!("/news?token={alice}"));
    let alice_ws1 = node.connect(1, &format!("/?channels=news,sport&token={alice}"));
    let alice_sse = plain(&mut node, 0, &format!("/sse/news?token={alice}"));
    let alice_poll = plain(&mut node, 1, &format!("/poll/news?token={alice}"));
    let bob_ws = node.connect(0, &format!("/news?token={bob}"));
    let bob_sse = plain(&mut node, 1, &format!("/sse/news?token={bob}"));
    // Names that only look like alice's, and a v1 token, which names no sub.
    let alice2 = node.connect(1, &format!("/news?token={}", jwt("alice2")));
    let v1 = mint_token(SECRET, &["news".into()], T0 + 60).expect("v1");
    let anonymous = node.connect(0, &format!("/news?token={v1}"));

    assert_eq!(disconnect(&mut node, sub("alice")), [2, 2]);
    assert_eq!((disconnected(&node, 0), disconnected(&node, 1)), (2, 2));
    assert!(ends_with_4003(&mut node, 0, alice_ws0));
    assert!(ends_with_4003(&mut node, 1, alice_ws1));
    assert_eq!(wire_text(&mut node, 0, alice_sse), SSE_LAST);
    let answer = wire_text(&mut node, 1, alice_poll);
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\ndisconnected\n"), "{answer}");
    for shard in 0..2 {
        let graceful = node.has_action(shard, |a| matches!(a, Action::ShutdownWrite(_)));
        assert!(graceful, "a graceful close on shard {shard}");
        let timeouts = node.shards[shard].counters().closed_count("poll_timeout");
        assert_eq!(timeouts, 0);
    }

    // Everyone else is untouched and still receives.
    assert!(still_open(&mut node, 0, bob_ws, "news"));
    assert!(wire_text(&mut node, 1, bob_sse).contains("data: still here\n\n"));
    assert!(still_open(&mut node, 1, alice2, "news"));
    assert!(still_open(&mut node, 0, anonymous, "news"));
    // alice's connections are gone: nothing more reaches them.
    assert!(node.take_wire(0, alice_ws0).is_empty());
    assert!(node.take_wire(0, alice_sse).is_empty());

    // Asking again finds nobody (closing connections are not counted twice).
    assert_eq!(disconnect(&mut node, sub("alice")), [0, 0]);
    assert_eq!(disconnect(&mut node, sub("nobody")), [0, 0]);
    assert_eq!((disconnected(&node, 0), disconnected(&node, 1)), (2, 2));
}

#[test]
fn by_channel_closes_every_subscriber_of_that_channel() {
    let mut node = node();
    let token = jwt("carol");
    let ws0 = node.connect(0, &format!("/news?token={token}"));
    let ws1 = node.connect(1, &format!("/news?token={token}"));
    let both = node.connect(1, &format!("/?channels=sport,news&token={token}"));
    let sse = plain(&mut node, 0, &format!("/sse/news?token={token}"));
    let poll = plain(&mut node, 1, &format!("/poll/news?token={token}"));
    let sport = node.connect(0, &format!("/sport?token={token}"));
    let sport_sse = plain(&mut node, 1, &format!("/sse/sport?token={token}"));

    let target = DisconnectTarget::Channel("news".into());
    assert_eq!(disconnect(&mut node, target.clone()), [2, 3]);
    assert_eq!((disconnected(&node, 0), disconnected(&node, 1)), (2, 3));
    assert!(ends_with_4003(&mut node, 0, ws0));
    assert!(ends_with_4003(&mut node, 1, ws1));
    assert!(ends_with_4003(&mut node, 1, both), "closed once, for news");
    assert_eq!(wire_text(&mut node, 0, sse), SSE_LAST);
    assert!(wire_text(&mut node, 1, poll).starts_with("HTTP/1.1 403 Forbidden\r\n"));

    // The other channel's subscribers stay, the same user's included.
    assert!(still_open(&mut node, 0, sport, "sport"));
    assert!(wire_text(&mut node, 1, sport_sse).contains("data: still here\n\n"));
    assert_eq!(disconnect(&mut node, target), [0, 0]);
}

#[test]
fn what_was_queued_before_still_goes_out_first() {
    let mut node = node();
    let id = node.connect(0, &format!("/news?token={}", jwt("dave")));
    // The message reaches the connection's queue, unsent, then the disconnect comes.
    let owner = ringcast_shard::owner_of("news", 2);
    let publish = ShardMsg::Publish {
        channel: "news".into(),
        payload: "last message".as_bytes().to_vec().into(),
        binary: false,
        position: None,
    };
    node.shards[owner].on_message(publish, node.now);
    node.route_from(owner);
    let closed = Arc::new(Mutex::new(None));
    let seen = closed.clone();
    let report = DisconnectReport::new(move |n| *seen.lock().unwrap() = Some(n));
    let msg = ShardMsg::Disconnect {
        target: sub("dave"),
        report,
    };
    node.shards[0].on_message(msg, node.now);
    assert_eq!(*closed.lock().unwrap(), Some(1));
    node.pump();
    let msgs = node.messages(0, id);
    let texts: Vec<&[u8]> = msgs
        .iter()
        .filter(|(op, _)| *op == OpCode::Text)
        .map(|(_, p)| p.as_slice())
        .collect();
    assert_eq!(texts, [b"last message"]);
    assert_eq!(msgs.last().map(|(op, _)| *op), Some(OpCode::Close));
    assert_eq!(close_code(&msgs), Some(4003));
}
