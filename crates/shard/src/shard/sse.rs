//! The Server-Sent-Events transport (`GET /sse/<channel>`): an event-stream answer that
//! stays open, one `id:`/`data:` event per message, and a comment line as keep-alive
//! where a WebSocket would get a ping.

use super::Shard;
use crate::conn::Transport;
use crate::ids::ConnId;
use crate::timer_wheel::TimerKind;
use base64::Engine;
use bytes::Bytes;

/// The answer that opens an event stream.
const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\nX-Accel-Buffering: no\r\nAccess-Control-Allow-Origin: *\r\n\r\nretry: 2000\n\n";
/// An SSE comment that keeps proxies from timing the stream out.
const SSE_KEEPALIVE: &[u8] = b": keep-alive\n\n";

impl Shard {
    /// An admitted event stream: answers, subscribes, and schedules keep-alives.
    pub(super) fn start_sse(&mut self, id: ConnId, channel: &str, now_ms: u64) {
        if self.refuse_channel_creation(id, channel, now_ms) {
            return;
        }
        if let Some(conn) = self.conns.get_mut(id) {
            conn.queue.push_control(Bytes::from_static(SSE_HEAD));
        }
        self.open_as(id, Transport::Sse);
        self.subscribe(id, channel);
        self.schedule_first_ping(id, now_ms);
        self.mark_ready(id);
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

/// One SSE event: `id`, then one `data:` line per message line (binary as base64
/// under `event: binary`). A message line ends at `\r\n`, `\r` or `\n`, exactly as an
/// EventSource splits the stream, so no published text can start a line of its own
/// (`event:`, `id:`, `retry:`) in the stream.
pub(super) fn sse_event(seq: u64, payload: &[u8], binary: bool) -> Bytes {
    let mut out = format!("id: {seq}\n");
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
    use super::sse_event;

    #[test]
    fn every_line_end_starts_a_new_data_line() {
        let event = sse_event(7, b"a\rid: 99\r\nevent: x\nretry: 1\r\rz", false);
        assert_eq!(
            event,
            "id: 7\ndata: a\ndata: id: 99\ndata: event: x\ndata: retry: 1\ndata: \ndata: z\n\n"
        );
    }

    #[test]
    fn plain_text_is_one_data_line_and_trailing_ends_keep_an_empty_line() {
        assert_eq!(sse_event(1, b"hello", false), "id: 1\ndata: hello\n\n");
        assert_eq!(sse_event(2, b"x\n", false), "id: 2\ndata: x\ndata: \n\n");
        assert_eq!(sse_event(3, b"", false), "id: 3\ndata: \n\n");
    }
}
