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
