//! The SSE transport: the event-stream answer, events with ids, and keep-alives.

use crate::node::{Node, plain_get, wire_text};
use ringcast_shard::ShardMsg;

#[test]
fn sse_streams_events_with_ids_and_keepalives() {
    let mut node = Node::new(2, |c| {
        c.ping_interval_ms = 1000;
        c.history.size = 10;
    });
    let id = plain_get(&mut node, 1, "/sse/news");
    let head = wire_text(&mut node, 1, id);
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream"),
        "{head}"
    );
    node.publish("news", "line one\nline two");
    node.shards[ringcast_shard::owner_of("news", 2)].on_message(
        ShardMsg::Publish {
            channel: "news".into(),
            payload: vec![0xff, 0x00].into(),
            binary: true,
            position: None,
        },
        node.now,
    );
    node.pump();
    let events = wire_text(&mut node, 1, id);
    let epoch = events
        .strip_prefix("id: ")
        .and_then(|r| r.get(..8))
        .expect("an id");
    assert_eq!(
        events,
        format!(
            "id: {epoch}:1\ndata: line one\ndata: line two\n\nid: {epoch}:2\nevent: binary\ndata: /wA=\n\n"
        )
    );
    node.advance(1100);
    let keepalives = wire_text(&mut node, 1, id);
    assert!(!keepalives.is_empty() && keepalives.replace(": keep-alive\n\n", "").is_empty());
    node.shards[1].refresh_gauges();
    assert_eq!(node.shards[1].counters().sse_connections, 1);
    assert_eq!(node.shards[1].counters().ping_timeouts, 0);
}
