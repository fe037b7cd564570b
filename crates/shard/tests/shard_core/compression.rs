//! permessage-deflate: one compressed frame shared by every deflate subscriber on every
//! shard, and compressed echo.

use crate::node::{MASK, Node};
use ringcast_proto::{Decoder, Message, OpCode, Role, generate_key};
use ringcast_shard::ConnId;

fn deflate_node() -> Node {
    Node::new(2, |c| {
        c.compression = true;
        c.compression_min_bytes = 64;
    })
}

fn connect_deflate(node: &mut Node, shard: usize, path: &str) -> ConnId {
    let id = node.accept(shard);
    let request = ringcast_proto::client_request_with_extensions(
        "x",
        path,
        &generate_key(5),
        "permessage-deflate; client_max_window_bits",
    );
    node.send_bytes(shard, id, &request);
    let head = String::from_utf8_lossy(&node.take_wire(shard, id)).into_owned();
    assert!(
        head.contains("permessage-deflate; server_no_context_takeover"),
        "{head}"
    );
    id
}

/// Decodes server frames with deflate enabled; returns (compressed?, text) pairs.
fn deflate_texts(node: &mut Node, shard: usize, id: ConnId) -> Vec<(bool, String)> {
    let mut bytes = node.take_wire(shard, id);
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = usize::from(bytes[at + 1] & 0x7f);
        let (len, head) = if len == 126 {
            (
                usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])),
                4,
            )
        } else {
            (len, 2)
        };
        let rsv1 = bytes[at] & 0x40 != 0;
        out.push((rsv1, at));
        at += head + len;
    }
    let mut decoder = Decoder::new(Role::Client, 1 << 20);
    decoder.enable_deflate();
    let mut texts = Vec::new();
    decoder
        .feed(&mut bytes, &mut |m| {
            if let Message::Text(p) = m {
                texts.push(String::from_utf8(p.to_vec()).unwrap())
            }
        })
        .unwrap();
    out.into_iter()
        .zip(texts)
        .map(|((rsv1, _), t)| (rsv1, t))
        .collect()
}

#[test]
fn fan_out_compresses_once_and_shares_the_frame() {
    let mut node = deflate_node();
    let big = "{\"price\":42}".repeat(20);
    let a = connect_deflate(&mut node, 0, "/quotes");
    let b = connect_deflate(&mut node, 1, "/quotes");
    let plain = node.connect(1, "/quotes");
    node.publish("quotes", &big);
    node.publish("quotes", "tiny");
    for (shard, id) in [(0, a), (1, b)] {
        assert_eq!(
            deflate_texts(&mut node, shard, id),
            vec![(true, big.clone()), (false, "tiny".to_owned())]
        );
    }
    assert_eq!(
        node.messages(1, plain),
        vec![
            (OpCode::Text, big.into_bytes()),
            (OpCode::Text, b"tiny".to_vec())
        ]
    );
    let compressions: u64 = node.shards.iter().map(|s| s.counters().compressed).sum();
    assert_eq!(
        compressions, 1,
        "compressed once for all shards and connections"
    );
}

#[test]
fn compressed_echo_round_trips() {
    let mut node = deflate_node();
    let id = connect_deflate(&mut node, 0, "/echo");
    let text = "echo me ".repeat(50);
    let compressed = ringcast_proto::deflate_message(text.as_bytes(), 15);
    let mut frame = Vec::new();
    ringcast_proto::encode_compressed_frame(&mut frame, OpCode::Text, &compressed, MASK);
    node.send_bytes(0, id, &frame);
    assert_eq!(deflate_texts(&mut node, 0, id), vec![(true, text)]);
}
