//! Channels created by long polls and event streams are rate-limited per source
//! address: past the budget a request for a channel the shard has no subscriber of (and
//! does not own) is answered 429 before anything is created.

use crate::node::{Node, plain_get, wire_text};

const OVER: &str = "channel_rate_limited";

#[test]
fn polls_and_streams_creating_channels_are_limited_per_address() {
    // The default budget is 20 channels a second per address and shard.
    let mut node = Node::new(1, |c| c.poll_timeout_ms = 60_000);
    node.peer = Some([10, 0, 0, 1].into());
    let mut refused = 0;
    for i in 0..30 {
        let path = if i % 2 == 0 {
            format!("/poll/p{i}")
        } else {
            format!("/sse/s{i}")
        };
        let id = plain_get(&mut node, 0, &path);
        let answer = wire_text(&mut node, 0, id);
        if answer.starts_with("HTTP/1.1 429") {
            refused += 1;
        }
    }
    assert_eq!(refused, 10);
    assert_eq!(node.shards[0].counters().handshake_failed_count(OVER), 10);
    node.shards[0].refresh_gauges();
    assert_eq!(
        node.shards[0].counters().channels,
        20,
        "refused requests created nothing"
    );
    // A channel the shard already has a subscriber of costs nothing.
    let joined = plain_get(&mut node, 0, "/sse/s1");
    assert!(wire_text(&mut node, 0, joined).starts_with("HTTP/1.1 200"));
    // Nor does one it owns already: a re-poll after an answer, with no poll held.
    node.peer = Some([10, 0, 0, 3].into());
    let first = plain_get(&mut node, 0, "/poll/again");
    node.publish("again", "x");
    let answer = wire_text(&mut node, 0, first);
    assert!(answer.starts_with("HTTP/1.1 200"));
    let epoch = answer
        .split("\"epoch\":\"")
        .nth(1)
        .and_then(|r| r.get(..8))
        .expect("epoch");
    node.peer = Some([10, 0, 0, 1].into());
    let again = plain_get(&mut node, 0, &format!("/poll/again?since={epoch}:1"));
    node.publish("again", "y");
    assert!(wire_text(&mut node, 0, again).starts_with("HTTP/1.1 200"));
    // Another address has its own budget, and the budget refills.
    node.peer = Some([10, 0, 0, 2].into());
    let other = plain_get(&mut node, 0, "/poll/other");
    assert!(!wire_text(&mut node, 0, other).starts_with("HTTP/1.1 429"));
    node.peer = Some([10, 0, 0, 1].into());
    node.advance(1000);
    let later = plain_get(&mut node, 0, "/sse/later");
    assert!(wire_text(&mut node, 0, later).starts_with("HTTP/1.1 200"));
    assert_eq!(node.shards[0].counters().handshake_failed_count(OVER), 10);
}
