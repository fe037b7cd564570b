//! The long-poll transport (`GET /poll/<channel>?since=<epoch>:<offset>`): the
//! connection asks the channel's owner for what it kept after `since` (which gives the
//! channel a poll ring when it keeps no history), waits for the next message or its
//! timeout, and is answered once and closed: 200 with
//! `{"epoch","last_offset","recovered","messages":[{"offset","data"|"base64"}]}`, or
//! 204 with the position in `X-Ringcast-Position`. A position that is no longer kept
//! (another epoch, or messages gone) is answered at once with `"recovered":false`, the
//! channel's position and no messages.

use super::json_framing::push_payload;
use super::{PollWait, Shard};
use crate::close_reason::CloseReason;
use crate::conn::Transport;
use crate::history::Recovered;
use crate::ids::ConnId;
use crate::position::{Position, Since};
use crate::timer_wheel::TimerKind;
use crate::write_queue::ENTRY_OVERHEAD;
use bytes::Bytes;
use std::fmt::Write;

/// What a long poll waits for.
#[derive(Debug, Clone, Copy)]
pub(super) enum PollState {
    /// The owner's answer (deliveries meanwhile are covered by it).
    Asking,
    /// A message after this position (None: the channel has no position, any
    /// message).
    Waiting { after: Option<Position> },
}

/// One long-poll answer.
struct PollAnswer<'a> {
    /// The channel's position (of the last message included, when there are some).
    position: Option<Position>,
    /// Whether the client has everything after the position it asked from.
    recovered: bool,
    /// Each message as its JSON element and offset.
    elements: &'a [(Bytes, u64)],
}

impl Shard {
    /// An admitted long poll: waits, and asks the owner what it kept after `since`.
    pub(super) fn start_poll(
        &mut self,
        id: ConnId,
        channel: String,
        since: Option<Since>,
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
                state: PollState::Asking,
            },
        );
        self.wheel.schedule(
            now_ms + self.cfg.poll_timeout_ms,
            id,
            TimerKind::PollDeadline,
        );
        self.request_history(id, &channel, since, true);
    }

    /// The owner's answer to a poll: answers at once with kept messages or a position
    /// that is lost, else waits for messages after the channel's position.
    pub(super) fn poll_reply(&mut self, id: ConnId, recovered: Recovered, now_ms: u64) {
        let Some(wait) = self.polls.get_mut(&id.idx) else {
            return;
        };
        if wait.generation != id.generation {
            return;
        }
        if let Some(result) = recovered.result {
            self.counters
                .recovered(Transport::Poll.label(), result.label());
        }
        if recovered.result.is_some_and(|r| !r.complete()) {
            let answer = PollAnswer {
                position: recovered.position,
                recovered: false,
                elements: &[],
            };
            self.answer_poll(id, &answer, CloseReason::PollDone, now_ms);
            return;
        }
        if recovered.messages.is_empty() {
            wait.state = PollState::Waiting {
                after: recovered.position,
            };
            return;
        }
        let elements: Vec<(Bytes, u64)> = recovered
            .messages
            .iter()
            .map(|kept| {
                let element = kept.element.clone();
                let element = element
                    .unwrap_or_else(|| poll_element(kept.offset, &kept.payload, kept.binary));
                (element, kept.offset)
            })
            .collect();
        let answer = PollAnswer {
            position: recovered.position,
            recovered: true,
            elements: &elements,
        };
        self.answer_poll(id, &answer, CloseReason::PollDone, now_ms);
    }

    /// A message for a long-poll subscriber (`element` encoded once per shard):
    /// answers it if it waits for this one. A message of another epoch than the one
    /// the poll waits in is answered with `"recovered":false`.
    pub(super) fn deliver_to_poll(
        &mut self,
        id: ConnId,
        element: &Bytes,
        position: Option<Position>,
    ) {
        let Some(wait) = self.polls.get(&id.idx) else {
            return;
        };
        if wait.generation != id.generation {
            return;
        }
        let PollState::Waiting { after } = wait.state else {
            return;
        };
        let Some(at) = position else {
            return;
        };
        let recovered = match after {
            Some(after) if after.epoch == at.epoch && at.offset <= after.offset => return,
            Some(after) => after.epoch == at.epoch,
            None => true,
        };
        self.counters.delivered += 1;
        let elements = [(element.clone(), at.offset)];
        let answer = PollAnswer {
            position: Some(at),
            recovered,
            elements: &elements,
        };
        self.answer_poll(id, &answer, CloseReason::PollDone, self.now_ms);
    }

    /// The poll timed out: answers 204 with the position it waited after.
    pub(super) fn poll_deadline(&mut self, id: ConnId, now_ms: u64) {
        let position = match self.polls.get(&id.idx).map(|p| p.state) {
            Some(PollState::Waiting { after }) => after,
            _ => None,
        };
        let answer = PollAnswer {
            position,
            recovered: true,
            elements: &[],
        };
        self.answer_poll(id, &answer, CloseReason::PollTimeout, now_ms);
    }

    /// Answers a long-poll connection and closes it. The answer holds as many messages
    /// as fit in `min(poll_max_bytes, max_queue_bytes)` of queue (at least one); the
    /// next poll, from its `last_offset`, gets the rest.
    fn answer_poll(
        &mut self,
        id: ConnId,
        answer: &PollAnswer<'_>,
        reason: CloseReason,
        now_ms: u64,
    ) {
        let cap = self.cfg.poll_max_bytes.min(self.cfg.max_queue_bytes) as usize;
        if let Some(conn) = self.conns.get_mut(id) {
            let budget = cap.saturating_sub(conn.queue.charged_bytes() as usize);
            for part in poll_answer(answer, budget) {
                conn.queue.push_final(part);
            }
        }
        self.begin_close(id, reason, now_ms);
    }
}

/// One message of a poll answer: `{"offset":n,"data":"…"}` (binary:
/// `{"offset":n,"base64":"…"}`).
pub(super) fn poll_element(offset: u64, payload: &[u8], binary: bool) -> Bytes {
    let mut out = String::with_capacity(payload.len() * 4 / 3 + 32);
    let _ = write!(out, "{{\"offset\":{offset},");
    push_payload(&mut out, payload, binary);
    out.push('}');
    Bytes::from(out)
}

/// The end of a 200 answer's body.
const BODY_TAIL: &[u8] = b"]}";
/// Between two messages of a 200 answer.
const SEPARATOR: &[u8] = b",";

/// The HTTP head of a 200 answer.
fn http_head(content_length: usize) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\nCache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n"
    )
}

/// The start of a 200 answer's body.
fn body_start(position: Option<Position>, recovered: bool) -> String {
    let mut out = String::from("{");
    if let Some(p) = position {
        let _ = write!(
            out,
            "\"epoch\":\"{}\",\"last_offset\":{},",
            p.epoch, p.offset
        );
    }
    let _ = write!(out, "\"recovered\":{recovered},\"messages\":[");
    out
}

/// The HTTP answer to a long poll as queue parts: 204 with the position when there is
/// nothing to say, or 200 (a head of its own, then the messages, each shared, then
/// the tail), holding the messages that fit in `budget` bytes of queue (its parts'
/// bytes and entries), and at least one.
fn poll_answer(answer: &PollAnswer<'_>, budget: usize) -> Vec<Bytes> {
    if answer.elements.is_empty() && answer.recovered {
        let position = answer
            .position
            .map(|p| format!("X-Ringcast-Position: {p}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 204 No Content\r\n{position}Cache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n"
        );
        return vec![Bytes::from(head)];
    }
    let entry = ENTRY_OVERHEAD as usize;
    // The head and the body's start and tail at their largest, each an entry.
    let widest = answer.position.map(|p| Position {
        offset: u64::MAX,
        ..p
    });
    let mut charged =
        http_head(usize::MAX).len() + body_start(widest, false).len() + BODY_TAIL.len() + 2 * entry;
    let mut body = 0usize;
    let mut taken = 0;
    for (i, (element, _)) in answer.elements.iter().enumerate() {
        // After the first, each message also takes a separator part.
        let separator = if i == 0 { 0 } else { SEPARATOR.len() };
        let parts = if i == 0 { 1 } else { 2 };
        let cost = element.len() + separator + parts * entry;
        if i > 0 && charged + cost > budget {
            break;
        }
        charged += cost;
        body += element.len() + separator;
        taken = i + 1;
    }
    let included = &answer.elements[..taken];
    let position = match (answer.position, included.last()) {
        (Some(p), Some((_, offset))) => Some(Position {
            offset: *offset,
            ..p
        }),
        (position, _) => position,
    };
    let start = body_start(position, answer.recovered);
    let content_length = start.len() + body + BODY_TAIL.len();
    let mut head = http_head(content_length);
    head.push_str(&start);
    let mut parts = Vec::with_capacity(taken * 2 + 2);
    parts.push(Bytes::from(head));
    for (i, (element, _)) in included.iter().enumerate() {
        if i > 0 {
            parts.push(Bytes::from_static(SEPARATOR));
        }
        parts.push(element.clone());
    }
    parts.push(Bytes::from_static(BODY_TAIL));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Epoch;

    #[test]
    fn elements_are_the_documented_json() {
        assert_eq!(
            poll_element(7, "a\"b\n\u{e9}".as_bytes(), false),
            "{\"offset\":7,\"data\":\"a\\\"b\\n\u{e9}\"}"
        );
        assert_eq!(
            poll_element(8, &[0xff, 0x00], true),
            r#"{"offset":8,"base64":"/wA="}"#
        );
    }

    #[test]
    fn answers_name_the_position_of_their_last_message() {
        let at = Position {
            epoch: Epoch::from_bits(0),
            offset: 9,
        };
        let elements = [
            (poll_element(8, b"x", false), 8),
            (poll_element(9, b"y", false), 9),
        ];
        let answer = PollAnswer {
            position: Some(at),
            recovered: true,
            elements: &elements,
        };
        let whole: Vec<u8> = poll_answer(&answer, usize::MAX).concat();
        let text = String::from_utf8(whole).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"epoch":"AAAAAAAA","last_offset":9,"recovered":true,
                "messages":[{"offset":8,"data":"x"},{"offset":9,"data":"y"}]})
        );
        // A budget for one message: the first goes, last_offset says where to go on.
        let one: Vec<u8> = poll_answer(&answer, 0).concat();
        let body = String::from_utf8(one).expect("utf-8");
        assert!(body.ends_with(r#"{"epoch":"AAAAAAAA","last_offset":8,"recovered":true,"messages":[{"offset":8,"data":"x"}]}"#), "{body}");
        let lost = PollAnswer {
            position: Some(at),
            recovered: false,
            elements: &[],
        };
        let body = String::from_utf8(poll_answer(&lost, usize::MAX).concat()).expect("utf-8");
        assert!(body.starts_with("HTTP/1.1 200 OK"));
        assert!(
            body.ends_with(
                r#"{"epoch":"AAAAAAAA","last_offset":9,"recovered":false,"messages":[]}"#
            )
        );
        let idle = PollAnswer {
            position: Some(at),
            recovered: true,
            elements: &[],
        };
        let head = String::from_utf8(poll_answer(&idle, usize::MAX).concat()).expect("utf-8");
        assert!(
            head.starts_with("HTTP/1.1 204")
                && head.contains("X-Ringcast-Position: AAAAAAAA:9\r\n")
        );
    }
}
