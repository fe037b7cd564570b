//! Resuming from a position: a WebSocket client that comes back with `since` gets every
//! kept message it missed exactly once, in order, then the live stream, whatever the
//! interleaving of the owner's deliveries and its history answer; `since=last`; the
//! JSON framing; SSE with `Last-Event-ID` and its reset; a lost history's new epoch; a
//! backlog larger than the queue.

use crate::node::{Node, close_code, plain_get, wire_text};
use ringcast_proto::{OpCode, client_request, generate_key};
use ringcast_shard::{ConnId, ShardMsg, owner_of};
use serde_json::Value;

fn with_history(size: usize) -> impl Fn(&mut ringcast_shard::ShardConfig) {
    move |c| {
        c.history.size = size;
        c.history.ttl_ms = 60_000;
    }
}

/// The JSON objects a JSON-framed connection was sent.
fn objects(node: &mut Node, shard: usize, id: ConnId) -> Vec<Value> {
    node.messages(shard, id)
        .into_iter()
        .filter(|(op, _)| *op == OpCode::Text)
        .map(|(_, p)| serde_json::from_slice(&p).expect("JSON"))
        .collect()
}

/// Offsets of the `message` objects, checking each is of `channel`.
fn offsets(objects: &[Value], channel: &str) -> Vec<u64> {
    objects
        .iter()
        .filter(|o| o["type"] == "message")
        .map(|o| {
            assert_eq!(o["channel"], channel);
            o["offset"].as_u64().expect("offset")
        })
        .collect()
}

fn publish_n(node: &mut Node, channel: &str, range: std::ops::RangeInclusive<u32>) {
    for i in range {
        node.publish(channel, &format!("m{i}"));
    }
}

/// Publishes at the owner without moving anything between shards.
fn publish_unrouted(node: &mut Node, channel: &str, text: &str) {
    let owner = owner_of(channel, node.shards.len());
    let msg = ShardMsg::Publish {
        channel: channel.into(),
        payload: text.as_bytes().to_vec().into(),
        binary: false,
        position: None,
    };
    node.shards[owner].on_message(msg, node.now);
}

/// The channel's epoch, from a JSON subscriber's `subscribed` object.
fn epoch_of(node: &mut Node, channel: &str) -> String {
    let id = node.connect(0, &format!("/{channel}?format=json"));
    let first = objects(node, 0, id).into_iter().next().expect("subscribed");
    assert_eq!(first["type"], "subscribed");
    first["epoch"].as_str().expect("epoch").to_owned()
}

#[test]
fn a_client_that_comes_back_gets_what_it_missed_once_then_the_live_stream() {
    let mut node = Node::new(2, with_history(1000));
    let live = node.connect(1, "/news?format=json");
    publish_n(&mut node, "news", 1..=50);
    let seen = objects(&mut node, 1, live);
    let epoch = seen[0]["epoch"].as_str().expect("epoch").to_owned();
    assert_eq!(seen[0]["offset"], 0, "subscribed before the first message");
    assert_eq!(offsets(&seen, "news"), (1..=50).collect::<Vec<_>>());
    assert_eq!(seen[50]["data"], "m50");
    assert_eq!(seen[50]["epoch"], epoch);
    // It goes away after message 50; 50 more are published meanwhile.
    node.send_frame(
        1,
        live,
        OpCode::Close,
        &ringcast_proto::close_payload(1000, ""),
    );
    publish_n(&mut node, "news", 51..=100);
    for shard in [0, 1] {
        let back = node.connect(shard, &format!("/news?format=json&since={epoch}:50"));
        publish_n(&mut node, "news", 101..=101);
        let got = objects(&mut node, shard, back);
        assert_eq!(got[0]["type"], "subscribed");
        assert_eq!(
            (got[0]["offset"].as_u64(), got[0]["recovered"].as_bool()),
            (Some(100 + shard as u64), Some(true))
        );
        let want: Vec<u64> = (51..=101 + shard as u64).collect();
        assert_eq!(offsets(&got, "news"), want, "shard {shard}");
    }
    // Raw framing resumes too: the payloads alone.
    let raw = node.connect(1, &format!("/news?since={epoch}:100"));
    let texts: Vec<Vec<u8>> = node.messages(1, raw).into_iter().map(|(_, p)| p).collect();
    assert_eq!(texts, vec![b"m101".to_vec(), b"m101".to_vec()]);
    node.shards[0].refresh_gauges();
    let recovered: u64 = node
        .shards
        .iter()
        .map(|s| s.counters().recovered_count("websocket", "full"))
        .sum();
    assert_eq!(recovered, 3);
}

#[test]
fn the_seam_has_no_gap_and_no_duplicate_whatever_the_interleaving() {
    let channel = "seam";
    for publish_before_request_routed in 0..4 {
        let mut node = Node::new(2, with_history(100));
        let owner = owner_of(channel, 2);
        let other = 1 - owner;
        // Another subscriber keeps the channel's deliveries flowing to this shard.
        let neighbour = node.connect(other, &format!("/{channel}"));
        publish_n(&mut node, channel, 1..=10);
        let epoch = epoch_of(&mut node, channel);
        node.take_wire(other, neighbour);
        // The resuming client's request and the owner's publishes race.
        let id = node.shards[other].on_accept(9000, None, node.now);
        let path = format!("/{channel}?format=json&since={epoch}:5");
        let mut request = client_request("x", &path, &generate_key(7));
        node.shards[other].on_recv(id, &mut request, node.now);
        for i in 0..publish_before_request_routed {
            publish_unrouted(&mut node, channel, &format!("early{i}"));
        }
        node.route_from(owner); // Deliveries of the early ones reach the shard first.
        node.route_from(other); // Then the history request reaches the owner.
        publish_unrouted(&mut node, channel, "after the answer");
        node.pump();
        let wire = node.take_wire(other, id);
        let end = wire
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a 101")
            + 4;
        node.wire.insert((other, id), wire[end..].to_vec());
        let got = objects(&mut node, other, id);
        let last = 10 + publish_before_request_routed as u64 + 1;
        assert_eq!(
            offsets(&got, channel),
            (6..=last).collect::<Vec<_>>(),
            "{publish_before_request_routed}"
        );
        assert_eq!(
            got.last().map(|o| o["data"].clone()),
            Some("after the answer".into())
        );
    }
}

#[test]
fn since_last_gives_the_current_value_and_json_names_multi_channel_messages() {
    let mut node = Node::new(2, with_history(10));
    publish_n(&mut node, "state", 1..=3);
    let raw = node.connect(0, "/state?since=last");
    let texts: Vec<Vec<u8>> = node.messages(0, raw).into_iter().map(|(_, p)| p).collect();
    assert_eq!(texts, vec![b"m3".to_vec()]);
    let epoch = epoch_of(&mut node, "state");
    // Positional since for /?channels=: a resumes, b takes its current value, c none.
    publish_n(&mut node, "a", 1..=4);
    publish_n(&mut node, "b", 1..=2);
    let ea = epoch_of(&mut node, "a");
    let multi = node.connect(
        1,
        // As a URL library writes it: `,` and `:` escaped.
        &format!("/?channels=a%2Cb%2cc&since={ea}%3A2%2Clast%2C&format=json"),
    );
    node.publish("c", "live");
    let got = objects(&mut node, 1, multi);
    let subscribed: Vec<(&str, Option<bool>)> = got
        .iter()
        .filter(|o| o["type"] == "subscribed")
        .map(|o| {
            (
                o["channel"].as_str().unwrap_or(""),
                o["recovered"].as_bool(),
            )
        })
        .collect();
    assert_eq!(subscribed.len(), 3, "{got:?}");
    assert!(subscribed.contains(&("a", Some(true))) && subscribed.contains(&("b", Some(true))));
    assert!(subscribed.contains(&("c", None)), "c asked for nothing");
    assert_eq!(
        offsets(
            &got.iter()
                .filter(|o| o["channel"] == "a")
                .cloned()
                .collect::<Vec<_>>(),
            "a"
        ),
        vec![3, 4]
    );
    assert_eq!(
        offsets(
            &got.iter()
                .filter(|o| o["channel"] == "b")
                .cloned()
                .collect::<Vec<_>>(),
            "b"
        ),
        vec![2]
    );
    assert_eq!(
        offsets(
            &got.iter()
                .filter(|o| o["channel"] == "c")
                .cloned()
                .collect::<Vec<_>>(),
            "c"
        ),
        vec![1]
    );
    // A position from another epoch: told, with the position to go on from, nothing else.
    let stale = node.connect(0, "/state?format=json&since=AAAAAAAA:2");
    let got = objects(&mut node, 0, stale);
    assert_eq!(
        got,
        vec![
            serde_json::json!({"type":"subscribed","channel":"state","epoch":epoch,"offset":3,"recovered":false})
        ]
    );
    for bad in [
        "/state?since=3",
        "/state?since=x:1",
        "/?channels=a&since=last,last",
        "/state?format=xml",
    ] {
        let id = node.accept(0);
        node.send_bytes(0, id, &client_request("x", bad, &generate_key(3)));
        assert!(node.take_wire(0, id).starts_with(b"HTTP/1.1 400"), "{bad}");
    }
}

#[test]
fn an_expired_history_starts_a_new_epoch_and_an_old_position_is_not_recovered() {
    let mut node = Node::new(1, |c| {
        c.history.size = 10;
        c.history.ttl_ms = 1_000;
    });
    publish_n(&mut node, "t", 1..=3);
    let old = epoch_of(&mut node, "t");
    node.advance(1_100);
    publish_n(&mut node, "t", 4..=4);
    let fresh = epoch_of(&mut node, "t");
    assert_ne!(old, fresh);
    let back = node.connect(0, &format!("/t?format=json&since={old}:3"));
    let got = objects(&mut node, 0, back);
    assert_eq!(got[0]["recovered"], false);
    assert_eq!(
        (got[0]["epoch"].as_str(), got[0]["offset"].as_u64()),
        (Some(fresh.as_str()), Some(1))
    );
    assert_eq!(got.len(), 1, "nothing from the lost history");
    assert_eq!(
        node.shards[0]
            .counters()
            .recovered_count("websocket", "none"),
        1
    );
}

#[test]
fn sse_resumes_from_last_event_id_and_resets_when_it_cannot() {
    let mut node = Node::new(2, with_history(10));
    let first = plain_get(&mut node, 1, "/sse/feed");
    publish_n(&mut node, "feed", 1..=4);
    let events = wire_text(&mut node, 1, first);
    let id_line = events
        .lines()
        .find(|l| l.starts_with("id: "))
        .expect("an id");
    let epoch = id_line["id: ".len()..]
        .split(':')
        .next()
        .expect("epoch")
        .to_owned();
    publish_n(&mut node, "feed", 5..=6);
    let resume = |node: &mut Node, last_event_id: &str| {
        let id = node.accept(0);
        let request =
            format!("GET /sse/feed HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {last_event_id}\r\n\r\n");
        node.send_bytes(0, id, request.as_bytes());
        let text = wire_text(node, 0, id);
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .expect("a head")
    };
    let body = resume(&mut node, &format!("{epoch}:4"));
    assert_eq!(
        body,
        format!("retry: 2000\n\nid: {epoch}:5\ndata: m5\n\nid: {epoch}:6\ndata: m6\n\n")
    );
    let body = resume(&mut node, "AAAAAAAA:4");
    assert_eq!(
        body,
        format!(
            "retry: 2000\n\nevent: reset\nid: {epoch}:6\ndata: {{\"epoch\":\"{epoch}\",\"offset\":6}}\n\n"
        )
    );
    let body = resume(&mut node, "17");
    assert!(
        body.contains("event: reset"),
        "an id of another server: {body}"
    );
    // ?since= works as well, and the header wins over it.
    let id = plain_get(&mut node, 0, &format!("/sse/feed?since={epoch}:5"));
    assert!(wire_text(&mut node, 0, id).ends_with(&format!("id: {epoch}:6\ndata: m6\n\n")));
}

#[test]
fn a_backlog_larger_than_the_queue_gets_what_fits_then_1013() {
    let mut node = Node::new(1, |c| {
        c.history.size = 1000;
        c.max_message_bytes = 1024;
        c.max_queue_bytes = 8 * 1024;
    });
    let body = "x".repeat(1000);
    for _ in 0..50 {
        node.publish("big", &body);
    }
    let epoch = epoch_of(&mut node, "big");
    let back = node.connect(0, &format!("/big?format=json&since={epoch}:0"));
    let msgs = node.messages(0, back);
    assert_eq!(close_code(&msgs), Some(1013));
    let got: Vec<Value> = msgs
        .iter()
        .filter(|(op, _)| *op == OpCode::Text)
        .map(|(_, p)| serde_json::from_slice(p).expect("JSON"))
        .collect();
    let delivered = offsets(&got, "big");
    assert!(
        !delivered.is_empty() && delivered.len() < 50,
        "{}",
        delivered.len()
    );
    assert_eq!(delivered, (1..=delivered.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        node.shards[0].counters().closed_count("recovery_too_large"),
        1
    );
}
