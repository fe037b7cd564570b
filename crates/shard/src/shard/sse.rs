//! The Server-Sent-Events transport (`GET /sse/<channel>`): an event-stream answer that
//! stays open, one `data:` event per message (with `id: <epoch>:<offset>` on channels
//! that keep history), and a comment line as keep-alive where a WebSocket would get a
//! ping. A stream that resumes (`Last-Event-ID`, `?since=`) and cannot get everything
//! it missed starts with an `event: reset` naming the channel's position.

use super::Shard;
use crate::conn::Transport;
use crate::ids::ConnId;
use crate::position::{Position, Since};
use crate::timer_wheel::TimerKind;
use base64::Engine;
use bytes::Bytes;

/// The answer that opens an event stream.
const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\nX-Accel-Buffering: no\r\nAccess-Control-Allow-Origin: *\r\n\r\nretry: 2000\n\n";
/// An SSE comment that keeps proxies from timing the stream out.
const SSE_KEEPALIVE: &[u8] = b": keep-alive\n\n";

impl Shard {
    /// An admitted event stream: answers, subscribes, and schedules keep-alives.
    pub(super) fn start_sse(
        &mut self,
        id: ConnId,
        channel: &str,
        since: Option<Since>,
        now_ms: u64,
    ) {
        if self.refuse_channel_creation(id, channel, now_ms) {
            return;
        }
        if let Some(conn) = self.conns.get_mut(id) {
            conn.queue.push_control(Bytes::from_static(SSE_HEAD));
        }
        self.open_as(id, Transport::Sse);
        // Before subscribing, as for a 101 (see `start_websocket`).
        self.mark_answer_ready(id);
        self.subscribe_from(id, channel, since);
        self.schedule_first_ping(id, now_ms);
    }

    /// The ping timer of an event stream: a keep-alive comment instead of a ping.
    pub(super) fn sse_keepalive(&mut self, id: ConnId, now_ms: u64) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.queue.push_keepalive(Bytes::from_static(SSE_KEEPALIVE));
        }
        self.mark_ready(id);
        self.wheel
            .schedule(now_ms + self.cfg.ping_interval_ms, id, TimerKind::Ping);
    }
}

/// `event: reset` with the channel's position as `{"epoch":…,"offset":…}` (`{}` on a
/// channel without history): what the client missed is not all kept.
pub(super) fn sse_reset(position: Option<Position>) -> Bytes {
    let data = match position {
        Some(p) => format!("{{\"epoch\":\"{}\",\"offset\":{}}}", p.epoch, p.offset),
        None => "{}".to_owned(),
    };
    let id = position.map(|p| format!("id: {p}\n")).unwrap_or_default();
    Bytes::from(format!("event: reset\n{id}data: {data}\n\n"))
}

/// One SSE event: `id` (when it has a position), then one `data:` line per message
/// line (binary as base64 under `event: binary`). A message line ends at `\r\n`, `\r` or `\n`, exactly as an
/// EventSource splits the stream, so no published text can start a line of its own
/// (`event:`, `id:`, `retry:`) in the stream.
pub(super) fn sse_event(position: Option<Position>, payload: &[u8], binary: bool) -> Bytes {
    let mut out = position.map(|p| format!("id: {p}\n")).unwrap_or_default();
    if binary {
        out.push_str("event: binary\ndata: ");
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(payload));
        out.push('\n');
    } else {
        for line in event_stream_lines(&String::from_utf8_lossy(payload)) {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    Bytes::from(out)
}

/// `text` split at every `\r\n`, `\r` and `\n` (the event-stream line ends).
fn event_stream_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(end) => {
                let skip = if text[end..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&text[end + skip..]);
                Some(&text[..end])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{sse_event, sse_reset};
    use crate::position::{Epoch, Position};

    fn at(offset: u64) -> Option<Position> {
        Some(Position {
            epoch: Epoch::from_bits(0),
            offset,
        })
    }

    #[test]
    fn every_line_end_starts_a_new_data_line() {
        let event = sse_event(at(7), b"a\rid: 99\r\nevent: x\nretry: 1\r\rz", false);
        assert_eq!(
            event,
            "id: AAAAAAAA:7\ndata: a\ndata: id: 99\ndata: event: x\ndata: retry: 1\ndata: \ndata: z\n\n"
        );
    }

    #[test]
    fn plain_text_is_one_data_line_and_trailing_ends_keep_an_empty_line() {
        assert_eq!(
            sse_event(at(1), b"hello", false),
            "id: AAAAAAAA:1\ndata: hello\n\n"
        );
        assert_eq!(sse_event(None, b"x\n", false), "data: x\ndata: \n\n");
        assert_eq!(sse_event(None, b"", false), "data: \n\n");
    }

    #[test]
    fn a_reset_names_the_position_to_continue_from() {
        assert_eq!(
            sse_reset(at(5)),
            "event: reset\nid: AAAAAAAA:5\ndata: {\"epoch\":\"AAAAAAAA\",\"offset\":5}\n\n"
        );
        assert_eq!(sse_reset(None), "event: reset\ndata: {}\n\n");
    }
}
