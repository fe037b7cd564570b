//! The last words of an open connection the server ends for a reason of its own (its
//! token expired, the admin API disconnected it), said in its transport's terms: a
//! WebSocket gets a close frame with an application code and a reason, an event stream a
//! last named event before it ends, a held long poll an HTTP error answer. They are
//! queued after whatever the connection is owed, so what was queued before still goes
//! out first. Each shard builds every farewell once and shares the buffers.

use super::{Shard, encoded};
use crate::close_reason::CloseReason;
use crate::conn::{Phase, Transport};
use crate::ids::ConnId;
use bytes::Bytes;
use ringcast_proto::{OpCode, close_payload, http_error_response};

/// WebSocket close code for an expired token (application range 4000-4999).
const TOKEN_EXPIRED_CODE: u16 = 4001;
/// WebSocket close code for a connection the admin API disconnected.
const DISCONNECTED_CODE: u16 = 4003;

/// Why the server ends an open connection with last words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Farewell {
    /// Its token's `exp` passed: WebSocket 4001 `token expired`, SSE
    /// `event: token_expired`, long poll `401 Unauthorized`.
    TokenExpired,
    /// `POST /disconnect` named it: WebSocket 4003 `disconnected`, SSE
    /// `event: disconnected`, long poll `403 Forbidden`.
    Disconnected,
}

/// One farewell's words in every transport.
struct Words {
    /// WebSocket close code.
    code: u16,
    /// SSE event name.
    event: &'static str,
    /// Long-poll HTTP status and reason phrase.
    status: (u16, &'static str),
    /// The close frame's reason, the event's data and the answer's body (plus a newline).
    text: &'static str,
}

impl Farewell {
    const ALL: [Farewell; 2] = [Farewell::TokenExpired, Farewell::Disconnected];

    fn words(self) -> Words {
        match self {
            Farewell::TokenExpired => Words {
                code: TOKEN_EXPIRED_CODE,
                event: "token_expired",
                status: (401, "Unauthorized"),
                text: "token expired",
            },
            Farewell::Disconnected => Words {
                code: DISCONNECTED_CODE,
                event: "disconnected",
                status: (403, "Forbidden"),
                text: "disconnected",
            },
        }
    }

    /// The close reason it is counted under.
    fn reason(self) -> CloseReason {
        match self {
            Farewell::TokenExpired => CloseReason::TokenExpired,
            Farewell::Disconnected => CloseReason::Disconnected,
        }
    }
}

impl Words {
    /// The bytes for each transport, indexed by `Transport as usize`.
    fn frames(&self) -> [Bytes; 3] {
        let (status, status_text) = self.status;
        [
            encoded(OpCode::Close, &close_payload(self.code, self.text)),
            Bytes::from(format!("event: {}\ndata: {}\n\n", self.event, self.text)),
            Bytes::from(http_error_response(
                status,
                status_text,
                &format!("{}\n", self.text),
            )),
        ]
    }
}

/// Every farewell's bytes for every transport, built once per shard.
pub(super) struct LastWords {
    frames: [[Bytes; 3]; 2],
}

impl LastWords {
    pub(super) fn new() -> Self {
        LastWords {
            frames: Farewell::ALL.map(|farewell| farewell.words().frames()),
        }
    }

    fn frame(&self, farewell: Farewell, transport: Transport) -> Bytes {
        self.frames[farewell as usize][transport as usize].clone()
    }
}

impl Shard {
    /// Queues `farewell`'s last words for an open connection after what it is owed and
    /// starts its graceful close, counted under the farewell's reason. False (and
    /// nothing done) when `id` is gone or not open.
    pub(super) fn close_with_last_words(
        &mut self,
        id: ConnId,
        farewell: Farewell,
        now_ms: u64,
    ) -> bool {
        let Some(conn) = self.conns.get_mut(id) else {
            return false;
        };
        if conn.phase != Phase::Open {
            return false;
        }
        conn.queue
            .push_final(self.last_words.frame(farewell, conn.transport));
        self.begin_close(id, farewell.reason(), now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_transport_gets_the_same_words() {
        let words = LastWords::new();
        let sse = words.frame(Farewell::Disconnected, Transport::Sse);
        assert_eq!(&sse[..], b"event: disconnected\ndata: disconnected\n\n");
        let sse = words.frame(Farewell::TokenExpired, Transport::Sse);
        assert_eq!(&sse[..], b"event: token_expired\ndata: token expired\n\n");
        let poll = words.frame(Farewell::Disconnected, Transport::Poll);
        assert!(poll.starts_with(b"HTTP/1.1 403 Forbidden\r\n"), "{poll:?}");
        assert!(poll.ends_with(b"\r\n\r\ndisconnected\n"), "{poll:?}");
        let ws = words.frame(Farewell::Disconnected, Transport::WebSocket);
        // FIN + close, length 2 + 12, code 4003, reason.
        assert_eq!(&ws[..4], &[0x88, 14, 0x0F, 0xA3]);
        assert_eq!(&ws[4..], b"disconnected");
    }
}
