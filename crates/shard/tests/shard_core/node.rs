//! The test harness: a `Node` of one or more shards driven like the reactor would drive
//! them, with a fake clock, plus helpers to read what connections were sent.

use ringcast_proto::{Decoder, Message, OpCode, Role, client_request, encode_frame, generate_key};
use ringcast_shard::{Action, ConnId, RecvEnd, Shard, ShardConfig, ShardMsg};
use std::collections::HashMap;

pub(crate) const MASK: Option<[u8; 4]> = Some([1, 2, 3, 4]);

/// Drives one or more shards like the reactor would, completing every send in full.
pub(crate) struct Node {
    pub(crate) shards: Vec<Shard>,
    pub(crate) now: u64,
    next_fd: i32,
    /// Bytes each connection was sent, by (shard, conn).
    pub(crate) wire: HashMap<(usize, ConnId), Vec<u8>>,
    pub(crate) actions: Vec<(usize, Action)>,
    /// Source address of the next accepted connection.
    pub(crate) peer: Option<std::net::IpAddr>,
}

impl Node {
    pub(crate) fn new(n: u16, tweak: impl Fn(&mut ShardConfig)) -> Self {
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

    pub(crate) fn accept(&mut self, shard: usize) -> ConnId {
        self.next_fd += 1;
        let id = self.shards[shard].on_accept(self.next_fd, self.peer, self.now);
        self.pump();
        id
    }

    pub(crate) fn send_bytes(&mut self, shard: usize, id: ConnId, bytes: &[u8]) {
        let mut buf = bytes.to_vec();
        self.shards[shard].on_recv(id, &mut buf, self.now);
        self.pump();
    }

    pub(crate) fn connect(&mut self, shard: usize, path: &str) -> ConnId {
        let id = self.accept(shard);
        let key = generate_key(u64::from(id.idx));
        self.send_bytes(shard, id, &client_request("localhost", path, &key));
        let wire = self.take_wire(shard, id);
        assert!(
            wire.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&wire)
        );
        // Frames sent right after the 101 (a resume, a `subscribed` object) stay.
        if let Some(end) = wire.windows(4).position(|w| w == b"\r\n\r\n")
            && end + 4 < wire.len()
        {
            self.wire.insert((shard, id), wire[end + 4..].to_vec());
        }
        id
    }

    pub(crate) fn send_frame(&mut self, shard: usize, id: ConnId, opcode: OpCode, payload: &[u8]) {
        let mut frame = Vec::new();
        encode_frame(&mut frame, opcode, payload, MASK);
        self.send_bytes(shard, id, &frame);
    }

    pub(crate) fn advance(&mut self, ms: u64) {
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
    pub(crate) fn pump(&mut self) {
        loop {
            let mut moved = false;
            for from in 0..self.shards.len() {
                moved |= self.route_from(from);
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

    /// Delivers the messages in shard `from`'s outbox; false when it was empty.
    pub(crate) fn route_from(&mut self, from: usize) -> bool {
        let out: Vec<(usize, Vec<ShardMsg>)> = self.shards[from]
            .outbox()
            .iter_mut()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(to, v)| (to, std::mem::take(v)))
            .collect();
        let moved = !out.is_empty();
        for (to, msgs) in out {
            for msg in msgs {
                self.shards[to].on_message(msg, self.now);
            }
        }
        moved
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

    pub(crate) fn take_wire(&mut self, shard: usize, id: ConnId) -> Vec<u8> {
        self.wire.remove(&(shard, id)).unwrap_or_default()
    }

    /// Decodes what the server sent to a connection.
    pub(crate) fn messages(&mut self, shard: usize, id: ConnId) -> Vec<(OpCode, Vec<u8>)> {
        decode_frames(self.take_wire(shard, id))
    }

    pub(crate) fn has_action(&self, shard: usize, want: impl Fn(&Action) -> bool) -> bool {
        self.actions.iter().any(|(s, a)| *s == shard && want(a))
    }

    pub(crate) fn publish(&mut self, owner_hint: &str, payload: &str) {
        let owner = ringcast_shard::owner_of(owner_hint, self.shards.len());
        self.shards[owner].on_message(
            ShardMsg::Publish {
                channel: owner_hint.into(),
                payload: payload.as_bytes().to_vec().into(),
                binary: false,
                position: None,
            },
            self.now,
        );
        self.pump();
    }
}

/// The frames a server sent, decoded as a client would: (opcode, payload), a close
/// frame's payload being its code.
pub(crate) fn decode_frames(mut bytes: Vec<u8>) -> Vec<(OpCode, Vec<u8>)> {
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

pub(crate) fn close_code(msgs: &[(OpCode, Vec<u8>)]) -> Option<u16> {
    msgs.iter()
        .find(|(op, _)| *op == OpCode::Close)
        .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]))
}

pub(crate) fn texts(node: &mut Node, id: ConnId) -> Vec<String> {
    node.messages(0, id)
        .into_iter()
        .filter(|(op, _)| *op == OpCode::Text)
        .map(|(_, p)| String::from_utf8(p).unwrap())
        .collect()
}

pub(crate) fn plain_get(node: &mut Node, shard: usize, path: &str) -> ConnId {
    let id = node.accept(shard);
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    node.send_bytes(shard, id, request.as_bytes());
    id
}

pub(crate) fn wire_text(node: &mut Node, shard: usize, id: ConnId) -> String {
    String::from_utf8_lossy(&node.take_wire(shard, id)).into_owned()
}
