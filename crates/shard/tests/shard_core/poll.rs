//! The long-poll transport: a held poll answered by the next message, resuming from the
//! owner's ring with `since=<epoch>:<offset>`, lost positions answered at once, the 204
//! at the timeout, bad requests, and answers capped and built from the owner's shared
//! encodings so hoarding pollers cost little.

use crate::node::{Node, plain_get, wire_text};
use ringcast_shard::{ConnId, RecvEnd, ShardMsg};

#[test]
fn long_poll_waits_answers_and_resumes_from_the_ring() {
    let mut node = Node::new(2, |c| c.poll_timeout_ms = 1000);
    // Whichever shard the poll lands on, the owner keeps the ring.
    let first = plain_get(&mut node, 0, "/poll/feed");
    assert!(node.take_wire(0, first).is_empty(), "held until a message");
    node.publish("feed", "one");
    let answer = wire_text(&mut node, 0, first);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    let (_, body) = split_answer(&answer);
    let epoch = body["epoch"].as_str().expect("an epoch").to_owned();
    assert_eq!(
        body,
        serde_json::json!({"epoch": epoch, "last_offset": 1, "recovered": true,
            "messages": [{"offset": 1, "data": "one"}]})
    );
    node.shards[0].on_recv_end(first, RecvEnd::Eof);
    node.pump();
    // Published while no poll is held: kept by the owner's ring.
    node.publish("feed", "two");
    node.publish("feed", "three");
    let again = plain_get(&mut node, 1, &format!("/poll/feed?since={epoch}:1"));
    let answer = wire_text(&mut node, 1, again);
    let (_, body) = split_answer(&answer);
    assert_eq!(
        body,
        serde_json::json!({"epoch": epoch, "last_offset": 3, "recovered": true,
            "messages": [{"offset": 2, "data": "two"}, {"offset": 3, "data": "three"}]})
    );
    let idle = plain_get(&mut node, 1, &format!("/poll/feed?since={epoch}:3"));
    node.advance(1100);
    let answer = wire_text(&mut node, 1, idle);
    assert!(answer.starts_with("HTTP/1.1 204 No Content"), "{answer}");
    assert!(
        answer.contains(&format!("X-Ringcast-Position: {epoch}:3\r\n")),
        "{answer}"
    );
    // A position of another epoch is answered at once: not recovered, where to go on.
    let lost = plain_get(&mut node, 0, "/poll/feed?since=AAAAAAAA:2");
    let (_, body) = split_answer(&wire_text(&mut node, 0, lost));
    assert_eq!(
        body,
        serde_json::json!({"epoch": epoch, "last_offset": 3, "recovered": false, "messages": []})
    );
    // The oldest kept position recovers; one the ring no longer holds does not.
    let mut node2 = Node::new(1, |c| c.poll_ring = 2);
    let seed = plain_get(&mut node2, 0, "/poll/r");
    for text in ["a", "b", "c"] {
        node2.publish("r", text);
    }
    let (_, body) = split_answer(&wire_text(&mut node2, 0, seed));
    let e = body["epoch"].as_str().expect("epoch").to_owned();
    let kept = plain_get(&mut node2, 0, &format!("/poll/r?since={e}:1"));
    let (_, body) = split_answer(&wire_text(&mut node2, 0, kept));
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(2));
    let gone = plain_get(&mut node2, 0, &format!("/poll/r?since={e}:0"));
    let (_, body) = split_answer(&wire_text(&mut node2, 0, gone));
    assert_eq!(
        (body["recovered"].as_bool(), body["last_offset"].as_u64()),
        (Some(false), Some(3))
    );
    node2.shards[0].flush_metrics();
    assert_eq!(
        node2.shards[0]
            .counters()
            .recovered_count("poll", "partial"),
        1
    );
    assert_eq!(
        node2.shards[0].counters().recovered_count("poll", "full"),
        1
    );
    for bad in ["x", "1", "AAAAAAAA", "AAAAAAAA:x"] {
        let bad = plain_get(&mut node, 0, &format!("/poll/feed?since={bad}"));
        assert!(wire_text(&mut node, 0, bad).starts_with("HTTP/1.1 400"));
    }
    let chan = plain_get(&mut node, 0, "/sse/bad%20chan");
    assert!(wire_text(&mut node, 0, chan).starts_with("HTTP/1.1 400"));
}

/// The poll answer's head and body; asserts Content-Length matches the body.
fn split_answer(answer: &str) -> (&str, serde_json::Value) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .expect("a number");
    assert_eq!(length, body.len(), "{head}");
    (head, serde_json::from_str(body).expect("JSON body"))
}

fn publish_raw(node: &mut Node, channel: &str, payload: Vec<u8>, binary: bool) {
    let owner = ringcast_shard::owner_of(channel, node.shards.len());
    node.shards[owner].on_message(
        ShardMsg::Publish {
            channel: channel.into(),
            payload: payload.into(),
            binary,
            position: None,
        },
        node.now,
    );
    node.pump();
}

/// A 64 KiB text message numbered `i`, with characters JSON must escape.
fn big_text(i: usize) -> String {
    let unit = format!("{i:04}\"\\\n\u{e9}");
    unit.repeat(64 * 1024 / unit.len())
}

#[test]
fn a_large_ring_is_served_in_capped_polls_that_resume_where_the_last_stopped() {
    let mut node = Node::new(2, |c| c.poll_timeout_ms = 1000);
    let seed = plain_get(&mut node, 0, "/poll/big");
    for i in 1..=63 {
        publish_raw(&mut node, "big", big_text(i).into_bytes(), false);
    }
    publish_raw(&mut node, "big", vec![0xff, 0x00, b'"'], true);
    let (_, first) = split_answer(&wire_text(&mut node, 0, seed));
    let epoch = first["epoch"].as_str().expect("epoch").to_owned();
    let mut since = 0u64;
    let mut seen = Vec::new();
    for _ in 0..64 {
        if since == 64 {
            break;
        }
        let poll = plain_get(&mut node, 1, &format!("/poll/big?since={epoch}:{since}"));
        let answer = wire_text(&mut node, 1, poll);
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:.200}");
        assert!(
            answer.len() <= 1 << 20,
            "a poll answer is capped: {}",
            answer.len()
        );
        let (_, body) = split_answer(&answer);
        let messages = body["messages"].as_array().expect("messages");
        assert!(!messages.is_empty());
        for m in messages {
            seen.push(m.clone());
        }
        let last = body["last_offset"].as_u64().expect("last_offset");
        assert_eq!(
            Some(last),
            messages.last().and_then(|m| m["offset"].as_u64())
        );
        since = last;
    }
    assert_eq!(since, 64);
    let ids: Vec<u64> = seen.iter().filter_map(|m| m["offset"].as_u64()).collect();
    assert_eq!(
        ids,
        (1..=64).collect::<Vec<_>>(),
        "nothing lost or repeated"
    );
    for (i, m) in seen.iter().take(63).enumerate() {
        assert_eq!(m["data"].as_str(), Some(big_text(i + 1).as_str()));
        assert!(m.get("base64").is_none());
    }
    assert_eq!(seen[63]["base64"], "/wAi");
}

/// Moves cross-shard messages until quiet, completing no send.
fn route_only(node: &mut Node) {
    for _ in 0..16 {
        let mut moved = false;
        for from in 0..node.shards.len() {
            moved |= node.route_from(from);
        }
        if !moved {
            return;
        }
    }
}

/// The start address of every chunk a send of `id` would write (the send never ends).
fn chunk_addresses(node: &mut Node, shard: usize, id: ConnId) -> Vec<usize> {
    let mut addresses = Vec::new();
    node.shards[shard].begin_send(id, &mut |c| addresses.push(c.as_ptr() as usize));
    addresses
}

#[test]
fn hoarding_pollers_queue_capped_answers_sharing_the_kept_encodings() {
    const POLLERS: usize = 50;
    const CAP: u32 = 1 << 20;
    let mut node = Node::new(2, |c| c.poll_timeout_ms = 30_000);
    let owner = ringcast_shard::owner_of("hoard", 2);
    let seed = plain_get(&mut node, owner, "/poll/hoard");
    for i in 0..64 {
        publish_raw(
            &mut node,
            "hoard",
            vec![b'a' + (i % 26) as u8; 64 * 1024],
            false,
        );
    }
    let (_, first) = split_answer(&wire_text(&mut node, owner, seed));
    let epoch = first["epoch"].as_str().expect("epoch").to_owned();
    // Pollers on both shards (the other one gets the owner's reply) that never read.
    let mut pollers = Vec::new();
    for i in 0..POLLERS {
        let shard = i % 2;
        let id = node.shards[shard].on_accept(1000 + i as i32, None, node.now);
        let mut request =
            format!("GET /poll/hoard?since={epoch}:0 HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
        node.shards[shard].on_recv(id, &mut request, node.now);
        route_only(&mut node);
        pollers.push((shard, id));
    }
    let mut total = 0u64;
    for &(shard, id) in &pollers {
        let queued = node.shards[shard].queued_bytes(id).expect("held");
        assert!(queued > 64 * 1024, "answered: {queued}");
        assert!(queued <= CAP, "one answer is capped: {queued}");
        total += u64::from(queued);
    }
    assert!(total <= POLLERS as u64 * u64::from(CAP), "{total}");
    // The messages are the owner's encodings, shared by every answer on either shard.
    let here = chunk_addresses(&mut node, pollers[0].0, pollers[0].1);
    let there = chunk_addresses(&mut node, pollers[1].0, pollers[1].1);
    let near = chunk_addresses(&mut node, pollers[2].0, pollers[2].1);
    assert!(here.len() > 2, "head, messages, tail: {here:?}");
    assert_ne!(here[0], there[0], "each answer has its own head");
    assert_eq!(here[1..here.len() - 1], there[1..there.len() - 1]);
    assert_eq!(here[1..here.len() - 1], near[1..near.len() - 1]);
}
