//! TLS connections (`ShardConfig::tls`): every accepted socket gets a [`TlsSession`];
//! what it receives is decrypted before the handshake, frame and request code sees it,
//! and its sends carry ciphertext. Frames are still queued as plaintext (shared
//! between connections, encoded once); a send encrypts what is queued into the
//! session's staging buffer in one pass, once the previous batch is fully sent, so
//! records are as large as the batch, at most one batch of ciphertext waits outside
//! the queue, and an idle connection holds no buffer.
//!
//! A failed TLS handshake (plain HTTP, not TLS, an oversized or incompatible hello)
//! closes only that connection, after the alert (or, for plain HTTP, a 400 in clear)
//! is flushed, and counts in `ringcast_handshake_failures_total{reason="tls_*"}`;
//! after the handshake, a TLS error closes with `tls_error`. A refusal decided before
//! the TLS handshake (over the rate, the budget or the slots at accept) cannot be
//! answered in HTTP: the socket is dropped.

use super::Shard;
use crate::close_reason::CloseReason;
use crate::conn::Phase;
use crate::handshake_failure::HandshakeFailure;
use crate::ids::ConnId;
use crate::tls_session::{HandshakeKind, TlsFailure, TlsSession};
use crate::write_queue::WriteQueue;

/// Plaintext scratch kept between calls up to this capacity.
const KEEP_SCRATCH_BYTES: usize = 64 << 10;

impl Shard {
    /// Starts TLS on a newly accepted connection when the shard serves TLS; false when
    /// the session could not be made (the connection is being dropped).
    pub(super) fn start_tls(&mut self, id: ConnId) -> bool {
        let Some(config) = &self.cfg.tls else {
            return true;
        };
        match TlsSession::new(config) {
            Ok(session) => {
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.set_tls(Box::new(session));
                }
                true
            }
            Err(failure) => {
                self.counters
                    .handshake_failed(HandshakeFailure::Tls(failure).label());
                self.abort(id, CloseReason::HandshakeFailed);
                self.progress(id);
                false
            }
        }
    }

    /// Ciphertext arrived on a TLS connection: decrypt it, hand the plaintext to the
    /// usual receive path, and send what the session staged (handshake records).
    pub(super) fn recv_tls(&mut self, id: ConnId, data: &mut [u8], now_ms: u64) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Some(mut session) = conn.take_tls() else {
            return;
        };
        let handshaking = conn.phase == Phase::Handshake;
        // What a TLS handshake stages is an answer; anything after it (a KeyUpdate
        // reply, records before the HTTP request) takes its turn like other sends.
        let tls_handshaking = !session.is_open();
        let mut plain = std::mem::take(&mut self.tls_plain);
        let result = session.receive(data, &mut plain);
        if let Some(conn) = self.conns.get_mut(id) {
            conn.set_tls(session);
        }
        match result {
            Ok(handshake) => {
                if let Some(kind) = handshake {
                    self.counters.tls_handshakes += 1;
                    if kind == HandshakeKind::Resumed {
                        self.counters.tls_resumed += 1;
                    }
                }
                if !plain.is_empty() {
                    self.recv_plain(id, &mut plain, now_ms);
                }
            }
            Err(failure) => self.tls_failed(id, failure, handshaking, now_ms),
        }
        plain.clear();
        if plain.capacity() <= KEEP_SCRATCH_BYTES {
            self.tls_plain = plain;
        }
        if tls_handshaking {
            self.mark_answer_ready(id);
        } else {
            self.mark_ready(id);
        }
    }

    /// The session failed: flush what it staged (an alert, or the plain-HTTP answer)
    /// and close.
    fn tls_failed(&mut self, id: ConnId, failure: TlsFailure, handshaking: bool, now_ms: u64) {
        let reason = if handshaking {
            self.counters
                .handshake_failed(HandshakeFailure::Tls(failure).label());
            CloseReason::HandshakeFailed
        } else {
            CloseReason::TlsError
        };
        self.begin_close(id, reason, now_ms);
    }

    /// A graceful close of a TLS connection whose frames are flushed: stages the
    /// closing alert before our FIN. True when it was staged now (send it first).
    pub(super) fn tls_close_notify(&mut self, id: ConnId) -> bool {
        let Some(session) = self.conns.get_mut(id).and_then(|conn| conn.tls_mut()) else {
            return false;
        };
        if !session.close_notify() {
            return false;
        }
        self.mark_ready(id);
        true
    }
}

/// The slice to send for a TLS connection: once every byte of the previous batch went
/// out, encrypts the queued frames (one batch, through the shard's `scratch`) into the
/// session, then hands `chunk` the session's ciphertext. Only then: what waits outside
/// the queue (and outside the slow-consumer limit) is at most the one batch being sent.
/// False when the encryption failed (the connection must be dropped once the send
/// returns).
pub(super) fn send_batch(
    session: &mut TlsSession,
    queue: &mut WriteQueue,
    scratch: &mut Vec<u8>,
    chunk: &mut dyn FnMut(&[u8]),
) -> bool {
    let mut ok = true;
    if session.is_open() && !session.has_unsent() && !queue.is_empty() {
        queue.begin_send(|slice| scratch.extend_from_slice(slice));
        queue.advance(scratch.len());
        ok = session.encrypt(scratch).is_ok();
        scratch.clear();
        if scratch.capacity() > KEEP_SCRATCH_BYTES {
            *scratch = Vec::new();
        }
    }
    chunk(session.begin_send());
    ok
}
