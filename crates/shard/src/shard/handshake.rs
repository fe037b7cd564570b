//! The HTTP request of a new connection: an upgrade to WebSocket, or a plain GET for
//! the SSE or long-poll transport. Admits it (capacity, origin, token, channels) or
//! answers an HTTP error and closes.

use super::Shard;
use crate::admission::{Admitted, Target, admit, admit_plain};
use crate::close_reason::CloseReason;
use crate::conn::Transport;
use crate::handshake_failure::HandshakeFailure;
use crate::ids::ConnId;
use bytes::Bytes;
use ringcast_proto::{
    HandshakeError, HandshakeStatus, PlainGet, PlainRoute, Upgrade, http_error_response,
    parse_plain_get, parse_upgrade,
};

impl Shard {
    /// Bytes of a connection's request: waits for the whole request, then starts the
    /// transport it asks for.
    pub(super) fn recv_handshake(&mut self, id: ConnId, data: &[u8], now_ms: u64) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.handshake.extend_from_slice(data);
        match parse_upgrade(&conn.handshake) {
            Ok(HandshakeStatus::Partial) => {}
            Ok(HandshakeStatus::Done(upgrade)) => self.start_websocket(id, upgrade, now_ms),
            Err(HandshakeError::NotUpgrade) => match parse_plain_get(&conn.handshake) {
                Ok(Some(get)) => self.start_plain(id, get, now_ms),
                Ok(None) => self.refuse(id, HandshakeError::NotUpgrade, now_ms),
                Err(err) => self.refuse(id, err, now_ms),
            },
            Err(err) => self.refuse(id, err, now_ms),
        }
    }

    fn refuse(&mut self, id: ConnId, err: HandshakeError, now_ms: u64) {
        let response = err.response();
        self.fail_handshake(id, HandshakeFailure::Request(err), response, now_ms);
    }

    /// Answers 503 and returns true when the node is full or draining.
    fn refuse_if_full(&mut self, id: ConnId, now_ms: u64) -> bool {
        if self.open < self.cfg.max_connections && self.drain.is_none() {
            return false;
        }
        let response = http_error_response(503, "Service Unavailable", "server full\n");
        self.fail_handshake(id, HandshakeFailure::ServerFull, response, now_ms);
        true
    }

    fn start_websocket(&mut self, id: ConnId, upgrade: Upgrade, now_ms: u64) {
        if self.refuse_if_full(id, now_ms) {
            return;
        }
        let Admitted {
            target,
            response,
            deflate,
            token_expires,
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
        let mut rest = conn.handshake.split_off(upgrade.consumed);
        conn.queue.push_control(Bytes::from(response));
        if let Some(params) = deflate {
            conn.deflate_bits = params.server_max_window_bits;
            conn.decoder.enable_deflate();
        }
        self.open_as(id, Transport::WebSocket);
        match target {
            Target::Echo => {
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.echo = true;
                }
            }
            Target::Channels(names) => {
                for name in names {
                    self.subscribe(id, &name);
                }
            }
        }
        self.schedule_first_ping(id, now_ms);
        self.schedule_token_expiry(id, token_expires, now_ms);
        self.mark_ready(id);
        if !rest.is_empty() {
            self.recv_frames(id, &mut rest, now_ms);
        }
    }

    /// `GET /sse/<channel>` or `GET /poll/<channel>?since=<id>`.
    fn start_plain(&mut self, id: ConnId, get: PlainGet, now_ms: u64) {
        if self.refuse_if_full(id, now_ms) {
            return;
        }
        let token_expires = match admit_plain(&self.cfg, &get, now_ms) {
            Ok(expires) => expires,
            Err(refusal) => {
                let response = refusal.response();
                self.fail_handshake(id, refusal.reason, response, now_ms);
                return;
            }
        };
        let since = get.query_param("since").map(str::parse::<u64>);
        match get.route {
            PlainRoute::Sse(channel) => self.start_sse(id, &channel, now_ms),
            PlainRoute::Poll(channel) => match since {
                None => self.start_poll(id, channel, None, now_ms),
                Some(Ok(since)) => self.start_poll(id, channel, Some(since), now_ms),
                Some(Err(_)) => {
                    let response =
                        http_error_response(400, "Bad Request", "since must be a number\n");
                    self.fail_handshake(id, HandshakeFailure::BadSince, response, now_ms);
                }
            },
        }
        self.schedule_token_expiry(id, token_expires, now_ms);
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
        if let Some(conn) = self.conns.get_mut(id) {
            conn.handshake = Vec::new();
            conn.queue.push_control(Bytes::from(response));
        }
        self.begin_close(id, CloseReason::HandshakeFailed, now_ms);
    }
}
