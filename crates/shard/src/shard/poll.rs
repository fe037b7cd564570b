//! The long-poll transport (`GET /poll/<channel>?since=<id>`): the connection asks the
//! channel's owner for the messages it kept after `since`, waits for the next message
//! or its timeout, and is answered once (200 with JSON, or 204) and closed.

use super::{PollWait, Shard};
use crate::close_reason::CloseReason;
use crate::conn::Transport;
use crate::ids::{ChannelName, ConnId};
use crate::messages::ShardMsg;
use crate::poll_ring::Kept;
use crate::timer_wheel::TimerKind;
use base64::Engine;
use bytes::Bytes;

impl Shard {
    /// An admitted long poll: waits, and asks the owner what it kept after `since`.
    pub(super) fn start_poll(
        &mut self,
        id: ConnId,
        channel: String,
        since: Option<u64>,
        now_ms: u64,
    ) {
        self.open_as(id, Transport::Poll);
        self.subscribe(id, &channel);
        self.polls.insert(
            id.idx,
            PollWait {
                generation: id.generation,
                since,
            },
        );
        self.wheel.schedule(
            now_ms + self.cfg.poll_timeout_ms,
            id,
            TimerKind::PollDeadline,
        );
        let channel: ChannelName = channel.into();
        let owner = self.owner(&channel);
        let request = ShardMsg::PollRequest {
            channel,
            since,
            shard: self.cfg.id,
            conn: id,
        };
        self.route(owner, request);
    }

    /// At the owner: long poll `conn` on `shard` asks for what was kept after `since`.
    pub(super) fn poll_request(
        &mut self,
        channel: &ChannelName,
        since: Option<u64>,
        shard: u16,
        conn: ConnId,
        now_ms: u64,
    ) {
        let (messages, last_seq) = self.owned.poll(channel, since, now_ms);
        let reply = ShardMsg::PollReply {
            conn,
            messages,
            last_seq,
        };
        self.route(shard, reply);
    }

    /// The owner's answer to a poll request: answers at once when something newer was
    /// kept, else keeps waiting for messages after the owner's last id.
    pub(super) fn poll_reply(&mut self, id: ConnId, messages: &[Kept], last_seq: u64, now_ms: u64) {
        let Some(wait) = self.polls.get_mut(&id.idx) else {
            return;
        };
        if wait.generation != id.generation {
            return;
        }
        match wait.since {
            Some(since) => {
                let fresh: Vec<Kept> = messages.iter().filter(|k| k.seq > since).cloned().collect();
                if !fresh.is_empty() {
                    self.answer_poll(id, &fresh, last_seq, now_ms);
                }
            }
            // A first poll waits for messages after the current last one.
            None => wait.since = Some(last_seq),
        }
    }

    /// A message for a long-poll subscriber: answers it if it waits for this one.
    pub(super) fn deliver_to_poll(&mut self, id: ConnId, message: &[Kept; 1]) {
        let seq = message[0].seq;
        let waiting_for_it = self
            .polls
            .get(&id.idx)
            .is_some_and(|w| w.generation == id.generation && w.since.is_none_or(|s| seq > s));
        if waiting_for_it {
            self.counters.delivered += 1;
            self.answer_poll(id, message, seq, self.now_ms);
        }
    }

    /// The poll timed out: answers 204 with the last id it knows.
    pub(super) fn poll_deadline(&mut self, id: ConnId, now_ms: u64) {
        let last = self.polls.get(&id.idx).and_then(|p| p.since).unwrap_or(0);
        self.answer_poll(id, &[], last, now_ms);
    }

    /// Answers a long-poll connection with `messages` (200, or 204 when empty) and
    /// closes it.
    fn answer_poll(&mut self, id: ConnId, messages: &[Kept], last_seq: u64, now_ms: u64) {
        let reason = if messages.is_empty() {
            CloseReason::PollTimeout
        } else {
            CloseReason::PollDone
        };
        let response = poll_response(messages, last_seq);
        if let Some(conn) = self.conns.get_mut(id) {
            conn.queue.push_control(Bytes::from(response));
        }
        self.begin_close(id, reason, now_ms);
    }
}

/// The HTTP answer to a long poll: 200 with the messages as JSON, or 204.
fn poll_response(messages: &[Kept], last_seq: u64) -> Vec<u8> {
    if messages.is_empty() {
        return format!(
            "HTTP/1.1 204 No Content\r\nX-Ringcast-Last-Id: {last_seq}\r\nCache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
    }
    let items: Vec<serde_json::Value> = messages
        .iter()
        .map(|k| {
            if k.binary {
                let data = base64::engine::general_purpose::STANDARD.encode(&k.payload);
                serde_json::json!({"id": k.seq, "data": data, "binary": true})
            } else {
                let data = String::from_utf8_lossy(&k.payload);
                serde_json::json!({"id": k.seq, "data": data})
            }
        })
        .collect();
    let last = messages.last().map_or(last_seq, |k| k.seq);
    let body = serde_json::json!({"last_id": last, "messages": items}).to_string();
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
