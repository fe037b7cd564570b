//! Slow consumers: the close and drop-oldest policies, an echo client that never reads,
//! and many stalled subscribers at once.

use crate::node::{MASK, Node};
use ringcast_proto::{Decoder, Message, OpCode, Role, client_request, encode_frame, generate_key};
use ringcast_shard::{ConnId, ShardMsg};

/// Publishes to a channel with one reader that keeps up and one that never reads (its
/// sends never complete), and returns the node for inspection.
fn slow_reader_node(policy: ringcast_shard::SlowConsumer) -> (Node, ConnId, ConnId) {
    let mut node = Node::new(1, |c| {
        c.max_queue_bytes = 4096;
        c.max_message_bytes = 1024;
        c.slow_consumer = policy;
    });
    let healthy = node.connect(0, "/feed");
    let stuck = node.connect(0, "/feed");
    // Start a send for the stuck connection that never completes.
    node.shards[0].on_message(
        ShardMsg::Publish {
            channel: "feed".into(),
            payload: vec![b'x'; 100].into(),
            binary: false,
            position: None,
        },
        node.now,
    );
    let mut stuck_inflight = false;
    while let Some((id, _)) = node.shards[0].next_send() {
        let mut bytes = Vec::new();
        node.shards[0].begin_send(id, &mut |c| bytes.extend_from_slice(c));
        if id == stuck {
            stuck_inflight = true;
        } else {
            let n = bytes.len();
            node.wire.entry((0, id)).or_default().extend(bytes);
            node.shards[0].on_send_done(id, Ok(n));
        }
    }
    assert!(stuck_inflight);
    (node, healthy, stuck)
}

fn pump_except(node: &mut Node, stuck: ConnId) {
    while let Some((id, _)) = node.shards[0].next_send() {
        let mut bytes = Vec::new();
        node.shards[0].begin_send(id, &mut |c| bytes.extend_from_slice(c));
        if id != stuck {
            let n = bytes.len();
            node.wire.entry((0, id)).or_default().extend(bytes);
            node.shards[0].on_send_done(id, Ok(n));
        }
    }
    node.actions
        .extend(node.shards[0].take_actions().map(|a| (0, a)));
}

/// Publishes `count` 100-byte messages to `feed`, completing every send but `stuck`'s.
fn publish_while_stuck(node: &mut Node, stuck: ConnId, count: usize) {
    for i in 0..count {
        node.shards[0].on_message(
            ShardMsg::Publish {
                channel: "feed".into(),
                payload: format!("{i:0100}").into_bytes().into(),
                binary: false,
                position: None,
            },
            node.now,
        );
        pump_except(node, stuck);
    }
}

#[test]
fn slow_consumer_is_closed_with_1008_and_healthy_reader_gets_everything() {
    let (mut node, healthy, stuck) = slow_reader_node(ringcast_shard::SlowConsumer::Close);
    publish_while_stuck(&mut node, stuck, 200);
    let got = node.messages(0, healthy);
    assert_eq!(got.len(), 201, "healthy reader got every message");
    assert_eq!(node.shards[0].counters().slow_consumer_closes, 1);
    assert_eq!(node.shards[0].counters().closed_count("slow_consumer"), 1);
    let queued = node.shards[0].queued_bytes(stuck).expect("still closing");
    assert!(queued <= 4096 + 16, "bounded queue: {queued}");
    // Its send finally completes: what follows the in-flight data is the close frame.
    let mut bytes = Vec::new();
    node.shards[0].on_send_done(stuck, Ok(102));
    node.shards[0].begin_send(stuck, &mut |c| bytes.extend_from_slice(c));
    let mut decoder = Decoder::new(Role::Client, 1 << 20);
    let mut codes = Vec::new();
    decoder
        .feed(&mut bytes, &mut |m| {
            if let Message::Close(Some(c)) = m {
                codes.push(c.code)
            }
        })
        .unwrap();
    assert_eq!(codes, vec![1008]);
}

#[test]
fn drop_oldest_keeps_the_connection_and_bounds_its_queue() {
    let (mut node, healthy, stuck) = slow_reader_node(ringcast_shard::SlowConsumer::DropOldest);
    publish_while_stuck(&mut node, stuck, 200);
    assert_eq!(node.messages(0, healthy).len(), 201);
    let c = &node.shards[0].counters();
    assert_eq!(c.slow_consumer_closes, 0);
    assert!(
        c.slow_consumer_dropped >= 150,
        "{}",
        c.slow_consumer_dropped
    );
    let queued = node.shards[0].queued_bytes(stuck).expect("still open");
    assert!(queued <= 4096, "bounded queue: {queued}");
    // Pings still get through ahead of the waiting messages: wait (at most the handshake
    // timeout and one ping interval) until the ping is queued.
    for _ in 0..410 {
        if node.shards[0].queued_bytes(stuck) != Some(queued) {
            break;
        }
        node.advance(100);
    }
    assert_eq!(
        node.shards[0].queued_bytes(stuck),
        Some(queued + 2),
        "a ping queued"
    );
    pump_except(&mut node, stuck);
    node.shards[0].on_send_done(stuck, Ok(102));
    let mut bytes = Vec::new();
    node.shards[0].begin_send(stuck, &mut |c| bytes.extend_from_slice(c));
    assert_eq!(&bytes[..2], &[0x89, 0x00], "ping first");
}

#[test]
fn echo_client_that_never_reads_is_closed_at_the_queue_limit() {
    let mut node = Node::new(1, |c| {
        c.max_queue_bytes = 4096;
        c.max_message_bytes = 1024;
    });
    let id = node.accept(0);
    let mut request = client_request("x", "/echo", &generate_key(3));
    node.shards[0].on_recv(id, &mut request, node.now);
    // Take the 101 and leave a send in flight forever: the client stopped reading.
    let (sid, _) = node.shards[0].next_send().expect("101 queued");
    node.shards[0].begin_send(sid, &mut |_| {});
    let mut frame = Vec::new();
    encode_frame(&mut frame, OpCode::Binary, &[7u8; 1000], MASK);
    for _ in 0..10 {
        let mut f = frame.clone();
        node.shards[0].on_recv(id, &mut f, node.now);
    }
    assert_eq!(node.shards[0].counters().slow_consumer_closes, 1);
    assert!(node.shards[0].queued_bytes(id).unwrap() <= 4096 + 1100);
}

#[test]
fn many_stalled_subscribers_are_all_closed() {
    let mut node = Node::new(2, |c| {
        c.max_queue_bytes = 4096;
        c.max_message_bytes = 1024;
    });
    let ids: Vec<(usize, ConnId)> = (0..50)
        .map(|i| (i % 2, node.connect(i % 2, "/feed")))
        .collect();
    for i in 0..200 {
        let owner = ringcast_shard::owner_of("feed", 2);
        node.shards[owner].on_message(
            ShardMsg::Publish {
                channel: "feed".into(),
                payload: format!("{i:0100}").into_bytes().into(),
                binary: false,
                position: None,
            },
            node.now,
        );
        // Deliver cross-shard messages but never complete a send: nobody reads.
        for from in 0..2 {
            let out: Vec<(usize, Vec<ShardMsg>)> = node.shards[from]
                .outbox()
                .iter_mut()
                .enumerate()
                .map(|(to, v)| (to, std::mem::take(v)))
                .collect();
            for (to, msgs) in out {
                for msg in msgs {
                    node.shards[to].on_message(msg, node.now);
                }
            }
            while let Some((id, _)) = node.shards[from].next_send() {
                node.shards[from].begin_send(id, &mut |_| {});
            }
        }
    }
    let closes: u64 = node
        .shards
        .iter()
        .map(|s| s.counters().slow_consumer_closes)
        .sum();
    assert_eq!(closes, ids.len() as u64);
}
