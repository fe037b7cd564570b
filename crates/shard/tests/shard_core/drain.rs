//! The drain: every connection closed with 1001, spread over the drain window.

use crate::node::{Node, close_code};
use ringcast_proto::{Decoder, Message, OpCode, Role};
use ringcast_shard::{ConnId, RecvEnd, ShardMsg};

#[test]
fn drain_closes_with_1001_spread_over_the_window() {
    let mut node = Node::new(1, |_| {});
    let ids: Vec<ConnId> = (0..100).map(|_| node.connect(0, "/news")).collect();
    node.shards[0].on_message(ShardMsg::Drain { spread_ms: 1000 }, node.now);
    node.pump();
    let mut per_tick = Vec::new();
    let mut closed_so_far = 0;
    for _ in 0..10 {
        node.advance(100);
        let closed = ids
            .iter()
            .filter(|&&id| {
                close_code(&node.wire.get(&(0, id)).map_or_else(Vec::new, |w| {
                    let mut w = w.clone();
                    let mut out = Vec::new();
                    let _ = Decoder::new(Role::Client, 1024).feed(&mut w, &mut |m| {
                        if let Message::Close(Some(c)) = m {
                            out.push((OpCode::Close, c.code.to_be_bytes().to_vec()));
                        }
                    });
                    out
                })) == Some(1001)
            })
            .count();
        per_tick.push(closed - closed_so_far);
        closed_so_far = closed;
    }
    assert_eq!(closed_so_far, 100, "{per_tick:?}");
    assert!(per_tick.iter().all(|&n| n <= 20), "{per_tick:?}");
    for id in ids {
        node.shards[0].on_recv_end(id, RecvEnd::Eof);
    }
    node.pump();
    assert!(node.shards[0].drained());
}
