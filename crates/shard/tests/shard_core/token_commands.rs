//! A connection admitted with a token: subscribe commands within its grant, token
//! refresh (same `sub`, a later or earlier expiry, channels it no longer allows end),
//! and what a refresh refuses.

use crate::node::{Node, close_code, texts};
use crate::tokens::{SECRET, T0, jwt, require_tokens};
use ringcast_proto::OpCode;
use ringcast_shard::{ConnId, mint_token};
use serde_json::{Value, json};

fn node(client_commands: bool) -> Node {
    Node::new(1, |c| {
        require_tokens(c);
        c.client_commands = client_commands;
    })
}

fn command(node: &mut Node, id: ConnId, text: &str) -> Value {
    node.send_frame(0, id, OpCode::Text, text.as_bytes());
    let answers = texts(node, id);
    assert_eq!(answers.len(), 1, "{answers:?}");
    serde_json::from_str(&answers[0]).expect("JSON answer")
}

fn refresh(node: &mut Node, id: ConnId, token: &str) -> Value {
    command(
        node,
        id,
        &json!({"type": "refresh", "token": token}).to_string(),
    )
}

#[test]
fn subscribe_commands_are_checked_against_the_grant() {
    let mut node = node(true);
    let token = jwt("user42", &["news", "chat.*"], 60);
    let id = node.connect(0, &format!("/?token={token}"));
    let ok = command(&mut node, id, r#"{"subscribe":"chat.room1"}"#);
    assert_eq!(ok, json!({"ok": "subscribe", "channel": "chat.room1"}));
    let refused = command(&mut node, id, r#"{"subscribe":"sport"}"#);
    assert_eq!(refused["error"], "the token does not allow this channel");
    node.publish("chat.room1", "hello");
    node.publish("sport", "not for you");
    assert_eq!(texts(&mut node, id), ["hello"]);
    let gone = command(&mut node, id, r#"{"unsubscribe":"chat.room1"}"#);
    assert_eq!(gone["ok"], "unsubscribe");
}

#[test]
fn a_channel_in_the_url_outside_the_grant_is_refused_at_the_handshake() {
    let mut node = node(true);
    let token = jwt("user42", &["news"], 60);
    let id = node.accept(0);
    let request = format!(
        "GET /?channels=news,sport&token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    node.send_bytes(0, id, request.as_bytes());
    let answer = String::from_utf8_lossy(&node.take_wire(0, id)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

#[test]
fn a_refresh_moves_the_expiry() {
    let mut node = node(false);
    let id = node.connect(0, &format!("/news?token={}", jwt("user42", &["news"], 2)));
    node.advance(1_500);
    let answer = refresh(&mut node, id, &jwt("user42", &["news"], 10));
    assert_eq!(answer, json!({"type": "refreshed", "exp": T0 + 10}));
    node.advance(1_000);
    node.send_frame(0, id, OpCode::Pong, b"");
    assert_eq!(
        close_code(&node.messages(0, id)),
        None,
        "closed at the old exp"
    );
    node.publish("news", "still here");
    assert_eq!(texts(&mut node, id), ["still here"]);
    node.advance(7_600);
    assert_eq!(close_code(&node.messages(0, id)), Some(4001));
}

#[test]
fn a_refresh_to_an_earlier_expiry_closes_earlier() {
    let mut node = node(false);
    let id = node.connect(0, &format!("/news?token={}", jwt("u", &["news"], 20)));
    let answer = refresh(&mut node, id, &jwt("u", &["news"], 3));
    assert_eq!(answer["type"], "refreshed");
    node.advance(3_100);
    assert_eq!(close_code(&node.messages(0, id)), Some(4001));
}

#[test]
fn channels_the_new_grant_does_not_allow_end() {
    let mut node = node(true);
    let token = jwt("u", &["a", "b"], 60);
    let id = node.connect(0, &format!("/?channels=a,b&token={token}"));
    let answer = refresh(&mut node, id, &jwt("u", &["a"], 60));
    assert_eq!(
        answer,
        json!({"type": "refreshed", "exp": T0 + 60, "unsubscribed": ["b"]})
    );
    node.publish("a", "kept");
    node.publish("b", "dropped");
    assert_eq!(texts(&mut node, id), ["kept"]);
}

#[test]
fn a_refresh_is_refused_for_another_sub_a_bad_token_or_too_soon() {
    let mut node = node(false);
    let id = node.connect(0, &format!("/news?token={}", jwt("alice", &["news"], 5)));
    let other = refresh(&mut node, id, &jwt("mallory", &["*"], 60));
    assert_eq!(other["error"], "the new token names another sub");
    node.advance(1_000);
    let forged = format!("{}x", jwt("alice", &["news"], 60));
    assert_eq!(refresh(&mut node, id, &forged)["error"], "bad_token");
    node.advance(1_000);
    let expired = refresh(&mut node, id, &jwt("alice", &["news"], 1));
    assert_eq!(expired["error"], "token_expired");
    let soon = refresh(&mut node, id, &jwt("alice", &["news"], 60));
    assert_eq!(soon["error"], "refresh too soon: at most one per second");
    let malformed = command(&mut node, id, r#"{"type":"refresh"}"#);
    assert_eq!(malformed["type"], "refresh");
    assert!(malformed["error"].is_string());
    // None of these moved the expiry.
    node.send_frame(0, id, OpCode::Pong, b"");
    node.advance(3_100);
    assert_eq!(close_code(&node.messages(0, id)), Some(4001));
}

#[test]
fn v1_tokens_refresh_too_and_without_a_token_there_is_nothing_to_refresh() {
    let mut node = node(false);
    let v1 = |secs| mint_token(SECRET, &["news".into()], T0 + secs).expect("v1");
    let id = node.connect(0, &format!("/news?token={}", v1(5)));
    let answer = refresh(&mut node, id, &v1(50));
    assert_eq!(answer, json!({"type": "refreshed", "exp": T0 + 50}));
    // A v1 token names no sub: a JWT with one is another user.
    node.advance(1_000);
    let other = refresh(&mut node, id, &jwt("u", &["news"], 60));
    assert_eq!(other["error"], "the new token names another sub");

    let mut open = Node::new(1, |c| c.client_commands = true);
    let id = open.connect(0, "/news");
    let answer = refresh(&mut open, id, &v1(50));
    assert_eq!(answer["error"], "this connection has no token");
}
