//! WebSocket frames from an open client: echo (on `/echo`), client commands, pings and
//! pongs, the client's close, protocol errors, and the queue limit for a client that
//! sends but does not read.

use super::{Shard, encoded};
use crate::close_reason::CloseReason;
use crate::ids::ConnId;
use ringcast_proto::{Message, OpCode, close_payload, code};

impl Shard {
    pub(super) fn recv_frames(&mut self, id: ConnId, data: &mut [u8], now_ms: u64) {
        let commands = self.reads_commands(id);
        let max_message = self.cfg.max_message_bytes;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let echo = conn.echo;
        let bits = conn.deflate_bits;
        let queue = &mut conn.queue;
        let compression = &mut self.compression;
        let mut echo_frame = |opcode: OpCode, payload: &[u8]| {
            let compressed = if bits == 0 {
                None
            } else {
                compression.frame(opcode, payload, bits)
            };
            compressed.unwrap_or_else(|| encoded(opcode, payload))
        };
        let mut received = std::mem::take(&mut self.commands);
        let mut pong = false;
        let mut peer_close: Option<Option<u16>> = None;
        let result = conn
            .decoder
            .feed(data, max_message, bits != 0, &mut |msg| match msg {
                Message::Text(p) if echo => queue.push_data(echo_frame(OpCode::Text, p)),
                Message::Binary(p) if echo => queue.push_data(echo_frame(OpCode::Binary, p)),
                Message::Text(p) if commands => received.push(p.to_vec()),
                Message::Text(_) | Message::Binary(_) => {}
                Message::Ping(p) => queue.push_pong(encoded(OpCode::Pong, p)),
                Message::Pong(_) => pong = true,
                Message::Close(frame) => peer_close = Some(frame.map(|f| f.code)),
            });
        for command in received.drain(..) {
            let reply = self.client_command(id, &command, now_ms);
            if let Some(conn) = self.conns.get_mut(id) {
                conn.queue
                    .push_data(encoded(OpCode::Text, reply.as_bytes()));
            }
        }
        self.commands = received;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if pong {
            self.counters.pongs_received += 1;
            if let Some(rtt_ms) = conn.pong_received(now_ms) {
                self.counters.ping_rtt(rtt_ms as f64 / 1000.0);
            }
        }
        match (result, peer_close) {
            (Err(err), _) => {
                let frame = close_payload(err.close_code(), err.label());
                self.close_with(id, CloseReason::Protocol(err), &frame, now_ms);
            }
            (Ok(()), Some(code)) => {
                let frame = code.map_or_else(Vec::new, |c| close_payload(c, ""));
                // The client asked to close: what was queued before its close frame
                // (echoes, messages) still goes out, then our close reply.
                conn.queue.push_final(encoded(OpCode::Close, &frame));
                self.begin_close(id, CloseReason::ClientClose, now_ms);
            }
            (Ok(()), None) if conn.queue.charged_bytes() > self.cfg.max_queue_bytes => {
                // Echoes and pongs of a client that sends but does not read.
                self.counters.slow_consumer_closes += 1;
                let payload = close_payload(code::POLICY, "slow consumer");
                self.close_with(id, CloseReason::SlowConsumer, &payload, now_ms);
            }
            (Ok(()), None) => self.mark_ready(id),
        }
    }
}
