//! The long-poll transport: a held poll answered by the next message, resuming from the
//! owner's ring with `since`, the 204 at the timeout, and bad requests.

use crate::node::{Node, plain_get, wire_text};
use ringcast_shard::RecvEnd;

#[test]
fn long_poll_waits_answers_and_resumes_from_the_ring() {
    let mut node = Node::new(2, |c| c.poll_timeout_ms = 1000);
    // Whichever shard the poll lands on, the owner keeps the ring.
    let first = plain_get(&mut node, 0, "/poll/feed");
    assert!(node.take_wire(0, first).is_empty(), "held until a message");
    node.publish("feed", "one");
    let answer = wire_text(&mut node, 0, first);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(
        answer.ends_with(r#"{"last_id":1,"messages":[{"data":"one","id":1}]}"#),
        "{answer}"
    );
    node.shards[0].on_recv_end(first, RecvEnd::Eof);
    node.pump();
    // Published while no poll is held: kept by the owner's ring.
    node.publish("feed", "two");
    node.publish("feed", "three");
    let again = plain_get(&mut node, 1, "/poll/feed?since=1");
    let answer = wire_text(&mut node, 1, again);
    assert!(
        answer.ends_with(
            r#"{"last_id":3,"messages":[{"data":"two","id":2},{"data":"three","id":3}]}"#
        ),
        "{answer}"
    );
    let idle = plain_get(&mut node, 1, "/poll/feed?since=3");
    node.advance(1100);
    let answer = wire_text(&mut node, 1, idle);
    assert!(answer.starts_with("HTTP/1.1 204 No Content"), "{answer}");
    let bad = plain_get(&mut node, 0, "/poll/feed?since=x");
    assert!(wire_text(&mut node, 0, bad).starts_with("HTTP/1.1 400"));
    let chan = plain_get(&mut node, 0, "/sse/bad%20chan");
    assert!(wire_text(&mut node, 0, chan).starts_with("HTTP/1.1 400"));
}
