//! WebSocket frames on an open connection: echo, pings from the client, protocol errors,
//! the client's close, a recv that ran out of buffers, and a peer that vanishes.

use crate::node::{MASK, Node, close_code};
use ringcast_proto::{
    Decoder, Message, OpCode, Role, client_request, close_payload, encode_frame, generate_key,
};
use ringcast_shard::{Action, RecvEnd};

#[test]
fn echo_text_binary_and_client_ping() {
    let mut node = Node::new(1, |_| {});
    let id = node.connect(0, "/echo");
    node.send_frame(0, id, OpCode::Text, b"hello");
    node.send_frame(0, id, OpCode::Binary, &[0, 255, 7]);
    node.send_frame(0, id, OpCode::Ping, b"p");
    assert_eq!(
        node.messages(0, id),
        vec![
            (OpCode::Text, b"hello".to_vec()),
            (OpCode::Binary, vec![0, 255, 7]),
            (OpCode::Pong, b"p".to_vec()),
        ]
    );
}

#[test]
fn protocol_errors_close_with_the_right_code() {
    let unmasked = {
        let mut f = Vec::new();
        encode_frame(&mut f, OpCode::Text, b"hi", None);
        f
    };
    let bad_utf8 = {
        let mut f = Vec::new();
        encode_frame(&mut f, OpCode::Text, &[0xff, 0xfe], MASK);
        f
    };
    let too_big = {
        let mut f = Vec::new();
        encode_frame(&mut f, OpCode::Binary, &[0u8; 2000], MASK);
        f
    };
    let reserved_opcode = vec![0x83, 0x80, 1, 2, 3, 4];
    let rsv_bits = vec![0xC1, 0x80, 1, 2, 3, 4];
    for (bytes, code) in [
        (unmasked, 1002),
        (bad_utf8, 1007),
        (too_big, 1009),
        (reserved_opcode, 1002),
        (rsv_bits, 1002),
    ] {
        let mut node = Node::new(1, |c| c.max_message_bytes = 1024);
        let id = node.connect(0, "/echo");
        node.send_bytes(0, id, &bytes);
        let msgs = node.messages(0, id);
        assert_eq!(close_code(&msgs), Some(code), "{msgs:?}");
        assert!(node.has_action(0, |a| matches!(a, Action::ShutdownWrite(_))));
    }
}

#[test]
fn client_close_is_answered_with_its_code() {
    let mut node = Node::new(1, |_| {});
    let id = node.connect(0, "/news");
    node.send_frame(0, id, OpCode::Close, &close_payload(1000, "bye"));
    assert_eq!(close_code(&node.messages(0, id)), Some(1000));
    assert!(node.has_action(0, |a| matches!(a, Action::ShutdownWrite(_))));
    node.shards[0].on_recv_end(id, RecvEnd::Eof);
    node.pump();
    assert_eq!(node.shards[0].connections(), 0);
    assert_eq!(node.shards[0].counters().closed_count("client_close"), 1);
}

#[test]
fn echoes_queued_before_a_client_close_are_still_sent() {
    let mut node = Node::new(1, |_| {});
    let id = node.accept(0);
    let mut bytes = client_request("x", "/echo", &generate_key(4));
    for text in ["one", "two"] {
        encode_frame(&mut bytes, OpCode::Text, text.as_bytes(), MASK);
    }
    encode_frame(&mut bytes, OpCode::Close, &close_payload(1000, ""), MASK);
    node.send_bytes(0, id, &bytes);
    let wire = node.take_wire(0, id);
    let end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut rest = wire[end..].to_vec();
    let mut got = Vec::new();
    Decoder::new(Role::Client, 1024)
        .feed(&mut rest, &mut |m| match m {
            Message::Text(p) => got.push(String::from_utf8(p.to_vec()).unwrap()),
            Message::Close(c) => got.push(format!("close {:?}", c.map(|c| c.code))),
            _ => {}
        })
        .unwrap();
    assert_eq!(got, ["one", "two", "close Some(1000)"]);
}

#[test]
fn no_buffers_rearms_the_recv() {
    let mut node = Node::new(1, |_| {});
    let id = node.connect(0, "/echo");
    let arms = |node: &Node| {
        node.actions
            .iter()
            .filter(|(_, a)| matches!(a, Action::ArmRecv(..)))
            .count()
    };
    let before = arms(&node);
    node.shards[0].on_recv_end(id, RecvEnd::NoBuffers);
    node.pump();
    assert_eq!(arms(&node), before + 1);
    node.send_frame(0, id, OpCode::Text, b"still here");
    assert_eq!(
        node.messages(0, id),
        vec![(OpCode::Text, b"still here".to_vec())]
    );
}

#[test]
fn peer_vanishing_mid_frame_frees_the_slot_and_channel() {
    let mut node = Node::new(1, |_| {});
    let id = node.connect(0, "/news");
    node.send_bytes(0, id, &[0x81, 0xFE, 0x01]);
    node.shards[0].on_recv_end(id, RecvEnd::Error(104));
    node.pump();
    assert_eq!(node.shards[0].connections(), 0);
    node.shards[0].refresh_gauges();
    assert_eq!(node.shards[0].counters().subscriptions, 0);
    assert_eq!(node.shards[0].counters().channels, 0);
}
