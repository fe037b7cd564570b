//! The HTTP request of a new connection: an upgrade to WebSocket, or a plain GET for
//! the SSE or long-poll transport. A socket is first admitted at accept, before anything
//! is read (draining, the per-IP rate, the handshake budget, the connection slots);
//! then its request head is gathered across receives and parsed once, and admitted
//! (origin, token, channels) or answered an HTTP error and closed.

use super::Shard;
use crate::admission::{Admitted, Target, admit, admit_plain, unescape_list};
use crate::close_reason::CloseReason;
use crate::conn::Transport;
use crate::handshake_budget::over_budget_response;
use crate::handshake_failure::HandshakeFailure;
use crate::ids::ConnId;
use crate::position::Since;
use crate::request_head::{Head, RequestHead};
use bytes::Bytes;
use ringcast_proto::{
    HandshakeError, HandshakeStatus, PlainGet, PlainRoute, Upgrade, http_error_response,
    parse_plain_get, parse_upgrade,
};
use std::net::IpAddr;

/// What a complete request head asks for.
enum Request<'a> {
    /// An upgrade, and the bytes after its head (frames sent without waiting).
    WebSocket(Upgrade, &'a mut [u8]),
    /// `GET /sse/...` or `GET /poll/...`.
    Plain(PlainGet),
    /// Neither: answered with this error.
    Bad(HandshakeError),
}

impl Shard {
    /// A socket was just accepted: refuses it at once, unread, when the shard is
    /// draining, its source is over the per-IP rate, the handshake budget is spent or
    /// no connection slot is left. Otherwise it holds a slot until it is freed.
    pub(super) fn admit_socket(&mut self, id: ConnId, peer: Option<IpAddr>, now_ms: u64) {
        if self.drain.is_some() {
            self.abort(id, CloseReason::Shutdown);
            self.progress(id);
        } else if let Some(ip) = peer
            && !self.limiter.allow(ip, now_ms)
        {
            let response = http_error_response(429, "Too Many Requests", "slow down\n");
            self.fail_handshake(id, HandshakeFailure::RateLimited, response, now_ms);
        } else if !self.budget.allow(now_ms) {
            let response = over_budget_response(id, now_ms);
            self.fail_handshake(id, HandshakeFailure::HandshakeBudget, response, now_ms);
        } else if self.slots.take() {
            if let Some(conn) = self.conns.get_mut(id) {
                conn.holds_slot = true;
            }
        } else {
            let response = http_error_response(503, "Service Unavailable", "server full\n");
            self.fail_handshake(id, HandshakeFailure::ServerFull, response, now_ms);
        }
    }

    /// Bytes of a connection's request: gathers the head until it is complete, parses it
    /// once, then starts the transport it asks for.
    pub(super) fn recv_handshake(&mut self, id: ConnId, data: &mut [u8], now_ms: u64) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let mut head = conn.take_head();
        let bytes = match head.feed(data) {
            Head::Partial => {
                conn.put_head(head);
                return;
            }
            Head::Ready(bytes) => bytes,
        };
        self.handshake_parses += 1;
        let request = match parse_upgrade(bytes) {
            // An empty line came before the request line: wait for the head's own end.
            Ok(HandshakeStatus::Partial) => {
                let kept = bytes.to_vec();
                if let Some(conn) = self.conns.get_mut(id) {
                    let mut head = RequestHead::default();
                    head.keep(&kept);
                    conn.put_head(head);
                }
                return;
            }
            Ok(HandshakeStatus::Done(upgrade)) => {
                let consumed = upgrade.consumed.min(bytes.len());
                Request::WebSocket(upgrade, &mut bytes[consumed..])
            }
            Err(HandshakeError::NotUpgrade) => match parse_plain_get(bytes) {
                Ok(Some(get)) => Request::Plain(get),
                Ok(None) => Request::Bad(HandshakeError::NotUpgrade),
                Err(err) => Request::Bad(err),
            },
            Err(err) => Request::Bad(err),
        };
        match request {
            Request::WebSocket(upgrade, rest) => self.start_websocket(id, upgrade, rest, now_ms),
            Request::Plain(get) => self.start_plain(id, get, now_ms),
            Request::Bad(err) => self.refuse(id, err, now_ms),
        }
    }

    fn refuse(&mut self, id: ConnId, err: HandshakeError, now_ms: u64) {
        let response = err.response();
        self.fail_handshake(id, HandshakeFailure::Request(err), response, now_ms);
    }

    /// Answers 503 and returns true when the shard started draining during the handshake
    /// (capacity was settled at accept).
    fn refuse_if_draining(&mut self, id: ConnId, now_ms: u64) -> bool {
        if self.drain.is_none() {
            return false;
        }
        let response = http_error_response(503, "Service Unavailable", "server full\n");
        self.fail_handshake(id, HandshakeFailure::ServerFull, response, now_ms);
        true
    }

    fn start_websocket(&mut self, id: ConnId, upgrade: Upgrade, rest: &mut [u8], now_ms: u64) {
        if self.refuse_if_draining(id, now_ms) {
            return;
        }
        let Admitted {
            target,
            response,
            deflate,
            framing,
            grant,
        } = match admit(&self.cfg, &upgrade, now_ms) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                let response = refusal.response();
                self.fail_handshake(id, refusal.reason, response, now_ms);
                return;
            }
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.queue.push_control(Bytes::from(response));
        conn.framing = framing;
        if let Some(params) = deflate {
            // Also what lets the decoder take compressed messages (`deflate_bits != 0`).
            conn.deflate_bits = params.server_max_window_bits;
        }
        self.open_as(id, Transport::WebSocket);
        // Before subscribing: a resume answered at once queues frames, and the 101 must
        // lead the connection onto the answers list, not the capped one.
        self.mark_answer_ready(id);
        match target {
            Target::Echo => {
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.echo = true;
                }
            }
            Target::Channels(subscriptions) => {
                for sub in subscriptions {
                    self.subscribe_from(id, &sub.name, sub.since);
                }
            }
        }
        self.schedule_first_ping(id, now_ms);
        self.schedule_token_expiry(id, grant, now_ms);
        if !rest.is_empty() {
            self.recv_frames(id, rest, now_ms);
        }
    }

    /// `GET /sse/<channel>` or `GET /poll/<channel>`, each maybe with
    /// `?since=<epoch>:<offset>` (or `last`); an event stream also resumes from its
    /// `Last-Event-ID`, which wins over `since` (it is the newer of the two).
    fn start_plain(&mut self, id: ConnId, get: PlainGet, now_ms: u64) {
        if self.refuse_if_draining(id, now_ms) {
            return;
        }
        let grant = match admit_plain(&self.cfg, &get, now_ms) {
            Ok(grant) => grant,
            Err(refusal) => {
                let response = refusal.response();
                self.fail_handshake(id, refusal.reason, response, now_ms);
                return;
            }
        };
        let since = match get
            .query_param("since")
            .map(|s| Since::parse(&unescape_list(s)))
        {
            None => None,
            Some(Some(since)) => Some(since),
            Some(None) => {
                let response = http_error_response(
                    400,
                    "Bad Request",
                    "since must be last or <epoch>:<offset>\n",
                );
                self.fail_handshake(id, HandshakeFailure::BadSince, response, now_ms);
                return;
            }
        };
        match get.route {
            PlainRoute::Sse(channel) => {
                // An id this server did not write (another version, another server)
                // names no kept position: the stream starts with a reset.
                let resume = get
                    .last_event_id
                    .as_deref()
                    .map(|id| Since::parse(id).unwrap_or(Since::Unknown))
                    .or(since);
                self.start_sse(id, &channel, resume, now_ms);
            }
            PlainRoute::Poll(channel) => self.start_poll(id, channel, since, now_ms),
        }
        self.schedule_token_expiry(id, grant, now_ms);
    }

    /// Counts the failure, answers `response` and closes after it is sent.
    pub(super) fn fail_handshake(
        &mut self,
        id: ConnId,
        failure: HandshakeFailure,
        response: Vec<u8>,
        now_ms: u64,
    ) {
        self.counters.handshake_failed(failure.label());
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.tls().is_some_and(|tls| !tls.is_open()) {
            // Refused before its TLS handshake: nothing can be said in HTTP.
            self.abort(id, CloseReason::HandshakeFailed);
            self.progress(id);
            return;
        }
        conn.clear_head();
        conn.queue.push_control(Bytes::from(response));
        self.begin_close(id, CloseReason::HandshakeFailed, now_ms);
    }
}
