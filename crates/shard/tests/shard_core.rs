//! The shard state machine driven with byte strings and a fake clock: handshakes,
//! echo, subscriptions routed through owners, fan-out, pings, timeouts, bad input, drain.

use ringcast_proto::{
    Decoder, Message, OpCode, Role, client_request, close_payload, encode_frame, generate_key,
};
use ringcast_shard::{Action, ConnId, RecvEnd, Shard, ShardConfig, ShardMsg};
use std::collections::HashMap;

const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);

/// Drives one or more shards like the reactor would, completing every send in full.
struct Node {
    shards: Vec<Shard>,
    now: u64,
    next_fd: i32,
    /// Bytes each connection was sent, by (shard, conn).
    wire: HashMap<(usize, ConnId), Vec<u8>>,
    actions: Vec<(usize, Action)>,
    /// Source address of the next accepted connection.
    peer: Option<std::net::IpAddr>,
}

impl Node {
    fn new(n: u16, tweak: impl Fn(&mut ShardConfig)) -> Self {
        let shards = (0..n)
            .map(|id| {
                let mut cfg = ShardConfig::single();
                cfg.id = id;
                cfg.shards = n;
                tweak(&mut cfg);
                Shard::new(cfg)
            })
            .collect();
        Node {
            shards,
            now: 1,
            next_fd: 100,
            wire: HashMap::new(),
            actions: Vec::new(),
            peer: None,
        }
    }

    fn accept(&mut self, shard: usize) -> ConnId {
        self.next_fd += 1;
        let id = self.shards[shard].on_accept(self.next_fd, self.peer, self.now);
        self.pump();
        id
    }

    fn send_bytes(&mut self, shard: usize, id: ConnId, bytes: &[u8]) {
        let mut buf = bytes.to_vec();
        self.shards[shard].on_recv(id, &mut buf, self.now);
        self.pump();
    }

    fn connect(&mut self, shard: usize, path: &str) -> ConnId {
        let id = self.accept(shard);
        let key = generate_key(u64::from(id.idx));
        self.send_bytes(shard, id, &client_request("localhost", path, &key));
        let wire = self.take_wire(shard, id);
        assert!(
            wire.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&wire)
        );
        id
    }

    fn send_frame(&mut self, shard: usize, id: ConnId, opcode: OpCode, payload: &[u8]) {
        let mut frame = Vec::new();
        encode_frame(&mut frame, opcode, payload, MASK);
        self.send_bytes(shard, id, &frame);
    }

    fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now = (self.now + 10).min(end);
            for shard in &mut self.shards {
                shard.on_tick(self.now);
            }
            self.pump();
        }
    }

    /// Moves cross-shard messages, completes sends and records actions until quiet.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for from in 0..self.shards.len() {
                let out: Vec<(usize, Vec<ShardMsg>)> = self.shards[from]
                    .outbox()
                    .iter_mut()
                    .enumerate()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(to, v)| (to, std::mem::take(v)))
                    .collect();
                for (to, msgs) in out {
                    moved = true;
                    for msg in msgs {
                        self.shards[to].on_message(msg, self.now);
                    }
                }
                while let Some((id, _fd)) = self.shards[from].next_send() {
                    moved = true;
                    let mut bytes = Vec::new();
                    self.shards[from].begin_send(id, &mut |c| bytes.extend_from_slice(c));
                    let n = bytes.len();
                    self.wire.entry((from, id)).or_default().extend(bytes);
                    self.shards[from].on_send_done(id, Ok(n));
                }
                let actions: Vec<Action> = self.shards[from].take_actions().collect();
                for action in actions {
                    if let Action::Abort(_) = action {
                        // A real abort ends the pending recv with EOF.
                        if let Some(id) = self.conn_with_fd(from, action) {
                            self.actions.push((from, action));
                            self.shards[from].on_recv_end(id, RecvEnd::Eof);
                            moved = true;
                            continue;
                        }
                    }
                    self.actions.push((from, action));
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn conn_with_fd(&self, shard: usize, action: Action) -> Option<ConnId> {
        let Action::Abort(fd) = action else {
            return None;
        };
        self.actions.iter().rev().find_map(|(s, a)| match a {
            Action::ArmRecv(id, f) if *s == shard && *f == fd => Some(*id),
            _ => None,
        })
    }

    fn take_wire(&mut self, shard: usize, id: ConnId) -> Vec<u8> {
        self.wire.remove(&(shard, id)).unwrap_or_default()
    }

    /// Decodes what the server sent to a connection.
    fn messages(&mut self, shard: usize, id: ConnId) -> Vec<(OpCode, Vec<u8>)> {
        let mut bytes = self.take_wire(shard, id);
        let mut decoder = Decoder::new(Role::Client, 1 << 20);
        let mut out = Vec::new();
        decoder
            .feed(&mut bytes, &mut |m| {
                out.push(match m {
                    Message::Text(p) => (OpCode::Text, p.to_vec()),
                    Message::Binary(p) => (OpCode::Binary, p.to_vec()),
                    Message::Ping(p) => (OpCode::Ping, p.to_vec()),
                    Message::Pong(p) => (OpCode::Pong, p.to_vec()),
                    Message::Close(c) => (
                        OpCode::Close,
                        c.map(|c| c.code.to_be_bytes().to_vec()).unwrap_or_default(),
                    ),
                })
            })
            .expect("server frames decode");
        out
    }

    fn has_action(&self, shard: usize, want: impl Fn(&Action) -> bool) -> bool {
        self.actions.iter().any(|(s, a)| *s == shard && want(a))
    }

    fn publish(&mut self, owner_hint: &str, payload: &str) {
        let owner = ringcast_shard::owner_of(owner_hint, self.shards.len());
        self.shards[owner].on_message(
            ShardMsg::Publish {
                channel: owner_hint.into(),
                payload: payload.as_bytes().to_vec().into(),
                binary: false,
            },
            self.now,
        );
        self.pump();
    }
}

fn close_code(msgs: &[(OpCode, Vec<u8>)]) -> Option<u16> {
    msgs.iter()
        .find(|(op, _)| *op == OpCode::Close)
        .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]))
}

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
fn handshake_and_frame_split_in_every_place_still_echo() {
    let mut node = Node::new(1, |_| {});
    let id = node.accept(0);
    let mut bytes = client_request("localhost", "/echo", &generate_key(9));
    encode_frame(&mut bytes, OpCode::Text, b"split me", MASK);
    for b in bytes.chunks(1) {
        node.send_bytes(0, id, b);
    }
    let wire = node.take_wire(0, id);
    let end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut rest = wire[end..].to_vec();
    let mut got = Vec::new();
    Decoder::new(Role::Client, 1024)
        .feed(&mut rest, &mut |m| {
            if let Message::Text(p) = m {
                got.push(p.to_vec())
            }
        })
        .unwrap();
    assert_eq!(got, vec![b"split me".to_vec()]);
}

#[test]
fn bad_handshakes_get_http_errors_and_close() {
    let cases: &[(&[u8], &str)] = &[
        (b"POST /news HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 405"),
        (b"\x16\x03\x01garbage\r\n\r\n", "HTTP/1.1 400"),
        (
            b"GET /news HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "HTTP/1.1 426",
        ),
        (
            b"GET /bad%20chan HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "HTTP/1.1 400",
        ),
    ];
    for (request, status) in cases {
        let mut node = Node::new(1, |_| {});
        let id = node.accept(0);
        node.send_bytes(0, id, request);
        let wire = node.take_wire(0, id);
        assert!(
            wire.starts_with(status.as_bytes()),
            "{status}: {}",
            String::from_utf8_lossy(&wire)
        );
        assert!(node.has_action(0, |a| matches!(a, Action::ShutdownWrite(_))));
        node.shards[0].on_recv_end(id, RecvEnd::Eof);
        node.pump();
        assert!(node.has_action(0, |a| matches!(a, Action::Close(_))));
        assert_eq!(node.shards[0].connections(), 0);
        assert_eq!(
            node.shards[0].counters().closed_count("handshake_failed"),
            1
        );
    }
}

#[test]
fn oversized_handshake_is_rejected() {
    let mut node = Node::new(1, |_| {});
    let id = node.accept(0);
    let mut request = b"GET /news HTTP/1.1\r\nHost: x\r\n".to_vec();
    while request.len() < 9000 {
        request.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    node.send_bytes(0, id, &request);
    assert!(node.take_wire(0, id).starts_with(b"HTTP/1.1 431"));
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
fn fan_out_across_shards_exactly_once_in_order() {
    let mut node = Node::new(3, |_| {});
    let mut subs = Vec::new();
    for i in 0..30 {
        let shard = i % 3;
        let channel = if i % 2 == 0 { "news" } else { "sport" };
        subs.push((shard, node.connect(shard, &format!("/{channel}")), channel));
    }
    for seq in 0..20 {
        node.publish("news", &format!("n{seq}"));
        node.publish("sport", &format!("s{seq}"));
    }
    node.publish("nobody", "dropped");
    for (shard, id, channel) in subs {
        let got: Vec<Vec<u8>> = node
            .messages(shard, id)
            .into_iter()
            .map(|(op, p)| {
                assert_eq!(op, OpCode::Text);
                p
            })
            .collect();
        let prefix = &channel[..1];
        let want: Vec<Vec<u8>> = (0..20)
            .map(|s| format!("{prefix}{s}").into_bytes())
            .collect();
        assert_eq!(got, want, "shard {shard} channel {channel}");
    }
    let delivered: u64 = node.shards.iter().map(|s| s.counters().delivered).sum();
    assert_eq!(delivered, 30 * 20);
    let dropped: u64 = node
        .shards
        .iter()
        .map(|s| s.counters().publish_dropped)
        .sum();
    assert_eq!(dropped, 1);
}

#[test]
fn interest_follows_first_and_last_subscriber() {
    let mut node = Node::new(2, |_| {});
    let owner = ringcast_shard::owner_of("news", 2);
    let other = 1 - owner;
    let a = node.connect(other, "/news");
    let b = node.connect(other, "/news");
    let cmds: Vec<_> = node.shards[owner].take_broker_cmds().collect();
    assert_eq!(cmds.len(), 1, "one subscribe for the node: {cmds:?}");
    for id in [a, b] {
        node.send_frame(other, id, OpCode::Close, &close_payload(1000, ""));
    }
    let cmds: Vec<_> = node.shards[owner].take_broker_cmds().collect();
    assert_eq!(cmds.len(), 1, "one unsubscribe once both left: {cmds:?}");
    node.publish("news", "late");
    assert_eq!(node.shards[owner].counters().publish_dropped, 1);
}

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

#[test]
fn unfinished_handshake_times_out() {
    let mut node = Node::new(1, |c| c.handshake_timeout_ms = 300);
    let id = node.accept(0);
    node.send_bytes(0, id, b"GET /news HTTP/1.1\r\n");
    node.advance(250);
    assert_eq!(node.shards[0].connections(), 1);
    node.advance(100);
    assert_eq!(node.shards[0].connections(), 0);
    assert_eq!(
        node.shards[0].counters().closed_count("handshake_timeout"),
        1
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

#[test]
fn full_shard_answers_503() {
    let mut node = Node::new(1, |c| c.max_connections = 2);
    node.connect(0, "/a");
    node.connect(0, "/b");
    let id = node.accept(0);
    node.send_bytes(0, id, &client_request("x", "/c", &generate_key(1)));
    assert!(node.take_wire(0, id).starts_with(b"HTTP/1.1 503"));
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
    // Pings still get through ahead of the waiting messages.
    node.advance(31_000);
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
fn connections_over_the_per_ip_rate_get_429() {
    let mut node = Node::new(1, |c| c.connect_rate_per_ip = 3);
    node.peer = Some([127, 0, 0, 9].into());
    for _ in 0..3 {
        node.connect(0, "/news");
    }
    let id = node.accept(0);
    assert!(node.take_wire(0, id).starts_with(b"HTTP/1.1 429"));
    node.peer = Some([127, 0, 0, 10].into());
    node.connect(0, "/news");
    node.peer = Some([127, 0, 0, 9].into());
    node.advance(400);
    node.connect(0, "/news");
}

fn token_node() -> Node {
    Node::new(1, |c| {
        c.auth = ringcast_shard::AuthPolicy::new(
            vec!["https://*.example.com".into()],
            Some(b"s3cret".to_vec()),
        );
        c.unix_ms_at_zero = 1_000_000;
    })
}

fn handshake_answer(node: &mut Node, request: &str) -> String {
    let id = node.accept(0);
    node.send_bytes(0, id, request.as_bytes());
    String::from_utf8_lossy(&node.take_wire(0, id)).into_owned()
}

fn request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

#[test]
fn tokens_and_origins_gate_the_handshake() {
    let mut node = token_node();
    let token = ringcast_shard::mint_token(b"s3cret", &["news".into()], 2_000);
    let answer = handshake_answer(&mut node, &request(&format!("/news?token={token}"), ""));
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let answer = handshake_answer(&mut node, &request("/news", ""));
    assert!(answer.starts_with("HTTP/1.1 401"), "no token: {answer}");
    let answer = handshake_answer(&mut node, &request(&format!("/sport?token={token}"), ""));
    assert!(
        answer.starts_with("HTTP/1.1 403"),
        "other channel: {answer}"
    );
    let forged = ringcast_shard::mint_token(b"guess", &["news".into()], 2_000);
    let answer = handshake_answer(&mut node, &request(&format!("/news?token={forged}"), ""));
    assert!(answer.starts_with("HTTP/1.1 401"), "forged: {answer}");
    let origin = "Origin: https://evil.org\r\n";
    let answer = handshake_answer(&mut node, &request(&format!("/news?token={token}"), origin));
    assert!(answer.starts_with("HTTP/1.1 403"), "origin: {answer}");
    let protocol = format!(
        "Sec-WebSocket-Protocol: chat, token.{token}\r\nOrigin: https://app.example.com\r\n"
    );
    let answer = handshake_answer(&mut node, &request("/news", &protocol));
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        answer.contains(&format!("Sec-WebSocket-Protocol: token.{token}\r\n")),
        "{answer}"
    );
    node.advance(1_000_001);
    let answer = handshake_answer(&mut node, &request(&format!("/news?token={token}"), ""));
    assert!(answer.starts_with("HTTP/1.1 401"), "expired: {answer}");
    assert_eq!(
        node.shards[0]
            .counters()
            .handshake_failed_count("token_expired"),
        1
    );
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

fn texts(node: &mut Node, id: ConnId) -> Vec<String> {
    node.messages(0, id)
        .into_iter()
        .filter(|(op, _)| *op == OpCode::Text)
        .map(|(_, p)| String::from_utf8(p).unwrap())
        .collect()
}

#[test]
fn one_connection_several_channels_from_the_url() {
    let mut node = Node::new(1, |c| c.max_channels_per_conn = 3);
    let id = node.connect(0, "/?channels=a,b,a,c");
    node.publish("a", "1");
    node.publish("b", "2");
    node.publish("c", "3");
    node.publish("d", "4");
    assert_eq!(texts(&mut node, id), vec!["1", "2", "3"]);
    let too_many = node.accept(0);
    let request = client_request("x", "/?channels=a,b,c,d", &generate_key(1));
    node.send_bytes(0, too_many, &request);
    assert!(node.take_wire(0, too_many).starts_with(b"HTTP/1.1 400"));
    let none = node.accept(0);
    node.send_bytes(0, none, &client_request("x", "/", &generate_key(2)));
    assert!(node.take_wire(0, none).starts_with(b"HTTP/1.1 404"));
    // Closing it leaves no subscription behind in any of its channels.
    node.send_frame(0, id, OpCode::Close, &close_payload(1000, ""));
    node.shards[0].refresh_gauges();
    assert_eq!(node.shards[0].counters().subscriptions, 0);
    assert_eq!(node.shards[0].counters().channels, 0);
}

#[test]
fn client_commands_subscribe_unsubscribe_and_explain_errors() {
    let mut node = Node::new(1, |c| {
        c.client_commands = true;
        c.max_channels_per_conn = 2;
    });
    let id = node.connect(0, "/");
    for cmd in [
        r#"{"subscribe":"news"}"#,
        r#"{"subscribe":"news"}"#,
        r#"{"subscribe":"bad chan"}"#,
        r#"{"subscribe":"sport"}"#,
        r#"{"subscribe":"third"}"#,
        r#"{"unsubscribe":"sport"}"#,
        r#"{"unsubscribe":"sport"}"#,
        r#"{"dance":"news"}"#,
        "not json",
    ] {
        node.send_frame(0, id, OpCode::Text, cmd.as_bytes());
    }
    let replies = texts(&mut node, id);
    assert_eq!(replies[0], r#"{"channel":"news","ok":"subscribe"}"#);
    assert!(replies[1].contains("already subscribed"), "{}", replies[1]);
    assert!(replies[2].contains("invalid channel"), "{}", replies[2]);
    assert_eq!(replies[3], r#"{"channel":"sport","ok":"subscribe"}"#);
    assert!(replies[4].contains("limit"), "{}", replies[4]);
    assert_eq!(replies[5], r#"{"channel":"sport","ok":"unsubscribe"}"#);
    assert!(replies[6].contains("not subscribed"), "{}", replies[6]);
    assert!(replies[7].contains("unknown command"), "{}", replies[7]);
    assert!(replies[8].contains("error"), "{}", replies[8]);
    assert_eq!(replies.len(), 9);
    node.publish("news", "hello");
    node.publish("sport", "gone");
    assert_eq!(texts(&mut node, id), vec!["hello"]);
}

#[test]
fn every_shard_ticks_its_own_subscribers_once_a_second() {
    let mut node = Node::new(2, |c| {
        c.tick_channel = Some("time".into());
        c.unix_ms_at_zero = 1_700_000_000_000;
    });
    let a = node.connect(0, "/time");
    let b = node.connect(1, "/time");
    node.advance(3_000);
    for (shard, id) in [(0, a), (1, b)] {
        let ticks: Vec<String> = node
            .messages(shard, id)
            .into_iter()
            .filter(|(op, _)| *op == OpCode::Text)
            .map(|(_, p)| String::from_utf8(p).unwrap())
            .collect();
        assert!((3..=4).contains(&ticks.len()), "{ticks:?}");
        assert!(
            ticks[0].starts_with(r#"{"time":"2023-11-14T22:13:2"#),
            "{}",
            ticks[0]
        );
    }
    // No cross-shard traffic: nothing was published or delivered through owners.
    assert_eq!(
        node.shards
            .iter()
            .map(|s| s.counters().publish_dropped)
            .sum::<u64>(),
        0
    );
}

fn plain_get(node: &mut Node, shard: usize, path: &str) -> ConnId {
    let id = node.accept(shard);
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    node.send_bytes(shard, id, request.as_bytes());
    id
}

fn wire_text(node: &mut Node, shard: usize, id: ConnId) -> String {
    String::from_utf8_lossy(&node.take_wire(shard, id)).into_owned()
}

#[test]
fn sse_streams_events_with_ids_and_keepalives() {
    let mut node = Node::new(2, |c| c.ping_interval_ms = 1000);
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
        },
        node.now,
    );
    node.pump();
    assert_eq!(
        wire_text(&mut node, 1, id),
        "id: 1\ndata: line one\ndata: line two\n\nid: 2\nevent: binary\ndata: /wA=\n\n"
    );
    node.advance(1100);
    let keepalives = wire_text(&mut node, 1, id);
    assert!(!keepalives.is_empty() && keepalives.replace(": keep-alive\n\n", "").is_empty());
    node.shards[1].refresh_gauges();
    assert_eq!(node.shards[1].counters().sse_connections, 1);
    assert_eq!(node.shards[1].counters().ping_timeouts, 0);
}

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
