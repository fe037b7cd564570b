//! Pings: spread over the interval, kept alive by pongs, and a missing pong closing the
//! connection.

use crate::node::Node;
use ringcast_proto::OpCode;
use ringcast_shard::{Action, ConnId};

#[test]
fn pings_spread_over_the_interval_and_pongs_keep_alive() {
    let mut node = Node::new(1, |c| {
        c.ping_interval_ms = 1000;
        c.pong_timeout_ms = 500;
    });
    let ids: Vec<ConnId> = (0..400).map(|_| node.connect(0, "/news")).collect();
    let mut per_bucket = Vec::new();
    for _ in 0..10 {
        node.advance(100);
        let pinged = ids
            .iter()
            .filter(|&&id| {
                let msgs = node.messages(0, id);
                let pinged = msgs.iter().any(|(op, _)| *op == OpCode::Ping);
                if pinged {
                    node.send_frame(0, id, OpCode::Pong, b"");
                }
                pinged
            })
            .count();
        per_bucket.push(pinged);
    }
    assert_eq!(per_bucket.iter().sum::<usize>(), 400, "{per_bucket:?}");
    assert!(
        per_bucket.iter().all(|&n| (15..=70).contains(&n)),
        "spread evenly: {per_bucket:?}"
    );
    for _ in 0..30 {
        node.advance(100);
        for &id in &ids {
            if node
                .messages(0, id)
                .iter()
                .any(|(op, _)| *op == OpCode::Ping)
            {
                node.send_frame(0, id, OpCode::Pong, b"");
            }
        }
    }
    let c = &node.shards[0].counters();
    assert_eq!(c.ping_timeouts, 0);
    assert_eq!(c.pings_sent, c.pongs_received);
    assert!(c.pings_sent >= 1200, "{}", c.pings_sent);
    assert_eq!(node.shards[0].connections(), 400);
}

/// With an interval longer than the handshake timeout (the defaults: 30 s and 10 s), the
/// stale handshake deadline's timer arms the first ping, so an open connection holds one
/// timer entry: first pings come in the interval after the deadline, spread over all of
/// it (so later pings of connections accepted together stay spread too).
#[test]
fn first_pings_after_the_handshake_deadline_spread_up_to_one_interval() {
    let mut node = Node::new(1, |c| {
        c.ping_interval_ms = 4000;
        c.handshake_timeout_ms = 1000;
        c.pong_timeout_ms = 10_000;
    });
    let ids: Vec<ConnId> = (0..300).map(|_| node.connect(0, "/news")).collect();
    let pinged = |node: &mut Node| {
        ids.iter()
            .filter(|&&id| {
                node.messages(0, id)
                    .iter()
                    .any(|(op, _)| *op == OpCode::Ping)
            })
            .count()
    };
    node.advance(990);
    assert_eq!(pinged(&mut node), 0, "none before the handshake deadline");
    let mut per_second = Vec::new();
    for _ in 0..4 {
        node.advance(1000);
        per_second.push(pinged(&mut node));
    }
    node.advance(100);
    per_second.push(pinged(&mut node));
    assert_eq!(
        per_second.iter().sum::<usize>(),
        300,
        "every one within an interval of the deadline: {per_second:?}"
    );
    assert!(
        per_second[..4].iter().all(|n| (40..=110).contains(n)),
        "spread over the interval after the deadline: {per_second:?}"
    );
}

#[test]
fn missing_pong_closes_the_connection() {
    let mut node = Node::new(1, |c| {
        c.ping_interval_ms = 1000;
        c.pong_timeout_ms = 500;
    });
    let id = node.connect(0, "/news");
    node.advance(1600);
    assert!(
        node.messages(0, id)
            .iter()
            .any(|(op, _)| *op == OpCode::Ping)
    );
    assert_eq!(node.shards[0].counters().ping_timeouts, 1);
    assert!(node.has_action(0, |a| matches!(a, Action::Abort(_))));
    assert_eq!(node.shards[0].connections(), 0);
    assert_eq!(node.shards[0].counters().closed_count("ping_timeout"), 1);
}

/// A client that floods pings and never reads (its sends never complete) holds 16 pongs,
/// not one per ping, and its queue stays a few bytes long: before, each ping queued a pong
/// behind a walk of every queued control frame (quadratic CPU, ~70 B of memory each).
#[test]
fn a_ping_flood_from_a_client_that_never_reads_holds_a_bounded_number_of_pongs() {
    let mut node = Node::new(1, |c| c.max_queue_bytes = 1 << 20);
    let flooder = node.connect(0, "/news");
    let bystander = node.connect(0, "/echo");
    // One ping gets a pong whose send never completes: the connection stops reading.
    node.shards[0].on_recv(flooder, &mut ping(b"first"), node.now);
    let (id, _) = node.shards[0].next_send().expect("the pong is ready");
    assert_eq!(id, flooder);
    node.shards[0].begin_send(id, &mut |_| {});
    let in_flight = node.shards[0].queued_bytes(flooder).expect("open");
    let mut flood = Vec::new();
    for i in 0..100_000u32 {
        flood.extend_from_slice(&ping(&i.to_be_bytes()));
    }
    for chunk in flood.chunks_mut(4096) {
        node.shards[0].on_recv(flooder, chunk, node.now);
    }
    let queued = node.shards[0].queued_bytes(flooder).expect("still open");
    assert_eq!(
        queued - in_flight,
        16 * 6,
        "16 waiting pongs (2-byte header + 4-byte payload each), not 100,000"
    );
    // The shard still serves its other connections.
    node.send_frame(0, bystander, OpCode::Text, b"still here");
    assert!(
        node.messages(0, bystander)
            .iter()
            .any(|(op, p)| *op == OpCode::Text && p == b"still here")
    );
    // When the stuck send completes, the latest ping's pong goes out.
    node.shards[0].on_send_done(flooder, Ok(in_flight as usize));
    node.pump();
    let pongs: Vec<Vec<u8>> = node
        .messages(0, flooder)
        .into_iter()
        .filter(|(op, _)| *op == OpCode::Pong)
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        pongs.last().map(Vec::as_slice),
        Some(&99_999u32.to_be_bytes()[..])
    );
}

fn ping(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    ringcast_proto::encode_frame(&mut frame, OpCode::Ping, payload, crate::node::MASK);
    frame
}
