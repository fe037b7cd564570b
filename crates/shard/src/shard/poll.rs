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
use crate::write_queue::ENTRY_OVERHEAD;
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
        if self.refuse_channel_creation(id, &channel, now_ms) {
            return;
        }
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
    /// closes it. The answer holds as many messages as fit in
    /// `min(poll_max_bytes, max_queue_bytes)` of queue (at least one); the next poll,
    /// from its `last_id`, gets the rest.
    fn answer_poll(&mut self, id: ConnId, messages: &[Kept], last_seq: u64, now_ms: u64) {
        let reason = if messages.is_empty() {
            CloseReason::PollTimeout
        } else {
            CloseReason::PollDone
        };
        let cap = self.cfg.poll_max_bytes.min(self.cfg.max_queue_bytes) as usize;
        if let Some(conn) = self.conns.get_mut(id) {
            let budget = cap.saturating_sub(conn.queue.charged_bytes() as usize);
            for part in poll_answer(messages, last_seq, budget) {
                conn.queue.push_final(part);
            }
        }
        self.begin_close(id, reason, now_ms);
    }
}

/// The end of a 200 answer's body.
const BODY_TAIL: &[u8] = b"]}";

/// The HTTP head of a 200 answer.
fn http_head(content_length: usize) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\nCache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n"
    )
}

/// The start of a 200 answer's body.
fn body_start(last_id: u64) -> String {
    format!("{{\"last_id\":{last_id},\"messages\":[")
}

/// The HTTP answer to a long poll as queue parts: 204 with the last id, or 200 with
/// `{"last_id":n,"messages":[...]}` (a head of its own, then the kept elements, shared,
/// then the tail), holding the messages that fit in `budget` bytes of queue (its
/// parts' bytes and entries), and at least one.
fn poll_answer(messages: &[Kept], last_seq: u64, budget: usize) -> Vec<Bytes> {
    if messages.is_empty() {
        let head = format!(
            "HTTP/1.1 204 No Content\r\nX-Ringcast-Last-Id: {last_seq}\r\nCache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n"
        );
        return vec![Bytes::from(head)];
    }
    let entry = ENTRY_OVERHEAD as usize;
    // The head and tail at their largest, each an entry.
    let mut charged =
        http_head(usize::MAX).len() + body_start(u64::MAX).len() + BODY_TAIL.len() + 2 * entry;
    let mut elements = 0usize;
    let mut taken = 0;
    for (i, kept) in messages.iter().enumerate() {
        let cost = kept.len() - usize::from(i == 0) + entry;
        if i > 0 && charged + cost > budget {
            break;
        }
        charged += cost;
        elements += kept.len() - usize::from(i == 0);
        taken = i + 1;
    }
    let included = &messages[..taken];
    let last_id = included.last().map_or(last_seq, |k| k.seq);
    let start = body_start(last_id);
    let content_length = start.len() + elements + BODY_TAIL.len();
    let mut head = http_head(content_length);
    head.push_str(&start);
    let mut parts = Vec::with_capacity(taken + 2);
    parts.push(Bytes::from(head));
    parts.extend(
        included
            .iter()
            .enumerate()
            .map(|(i, k)| if i == 0 { k.first() } else { k.following() }),
    );
    parts.push(Bytes::from_static(BODY_TAIL));
    parts
}
