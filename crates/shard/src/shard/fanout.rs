//! Fan-out of published messages: the owner keeps a message in the channel's history
//! (which gives it its position), encodes (and maybe compresses) its frame once, and
//! routes one shared copy to every shard with subscribers; each shard queues it on its
//! subscribers under the slow-consumer policy (the other framings — SSE, JSON, long
//! poll — are encoded once per shard, when a subscriber needs them). Connections
//! waiting for their history answer skip it: the answer covers it (see `recovery`).
//! The tick channel is published here too, by every shard to its own subscribers.

use super::json_framing::message_frame;
use super::poll::poll_element;
use super::sse::sse_event;
use super::{Shard, encoded};
use crate::close_reason::CloseReason;
use crate::compression::FANOUT_WINDOW_BITS;
use crate::config::SlowConsumer;
use crate::conn::{Framing, Transport};
use crate::ids::ChannelName;
use crate::messages::ShardMsg;
use crate::position::Position;
use crate::write_queue::ENTRY_OVERHEAD;
use bytes::Bytes;
use ringcast_proto::{OpCode, close_payload, code};

/// One message as a shard queues it on its local subscribers (see [`ShardMsg::Deliver`]).
pub(super) struct Delivery<'a> {
    pub(super) frame: Bytes,
    pub(super) deflated: Option<Bytes>,
    pub(super) payload: &'a Bytes,
    pub(super) binary: bool,
    pub(super) position: Option<Position>,
}

impl Shard {
    /// Publishes the time to local subscribers of the tick channel once a second.
    pub(super) fn tick_channel(&mut self, now_ms: u64) {
        let Some(name) = &self.cfg.tick_channel else {
            return;
        };
        let Some(text) = self.tick.due(self.cfg.unix_ms_at_zero + now_ms) else {
            return;
        };
        if self.channels.slot_of(name).is_some() {
            let name = name.clone();
            let payload = Bytes::from(text);
            let frame = encoded(OpCode::Text, &payload);
            let delivery = Delivery {
                frame,
                deflated: None,
                payload: &payload,
                binary: false,
                position: None,
            };
            self.deliver(&name, delivery);
        }
    }

    /// At the owner: a message for `channel` from the broker.
    pub(super) fn publish(
        &mut self,
        channel: ChannelName,
        payload: &Bytes,
        binary: bool,
        position: Option<Position>,
    ) {
        let position = self
            .histories
            .append(&channel, payload, binary, position, self.now_ms);
        let Some(shards) = self.owned.interested(&channel) else {
            self.counters.publish_dropped += 1;
            return;
        };
        if shards.is_empty() {
            return;
        }
        let opcode = if binary { OpCode::Binary } else { OpCode::Text };
        let frame = encoded(opcode, payload);
        let deflated = self.compression.frame(opcode, payload, FANOUT_WINDOW_BITS);
        if deflated.is_some() {
            self.counters.compressed += 1;
        }
        let deliver = ShardMsg::Deliver {
            channel,
            frame,
            deflated,
            payload: payload.clone(),
            binary,
            position,
        };
        // The shard set borrows the owner's state, so the local copy is kept and
        // delivered once every other shard has its own.
        let mut local = None;
        for shard in shards.iter() {
            if let Some(msg) = self.outbox.route(shard, deliver.clone()) {
                local = Some(msg);
            }
        }
        if let Some(msg) = local {
            self.on_message(msg, self.now_ms);
        }
    }

    /// Queues one message on every local subscriber of `channel`.
    pub(super) fn deliver(&mut self, channel: &str, delivery: Delivery<'_>) {
        let Delivery {
            frame,
            deflated,
            payload,
            binary,
            position,
        } = delivery;
        let Some(subs) = self.channels.subscribers(channel) else {
            return;
        };
        // Only while some connection waits for its history answer, and only for a
        // message with a position (one without, such as a foreign Redis publish, is in
        // no history, so no answer covers it).
        let resuming = if self.resuming.is_empty() || position.is_none() {
            None
        } else {
            self.channels.shared_name(channel)
        };
        let limit = self.cfg.max_queue_bytes as usize;
        let mut slow = std::mem::take(&mut self.slow);
        let mut polls = std::mem::take(&mut self.answered);
        let mut sse: Option<Bytes> = None;
        let mut json: Option<Bytes> = None;
        for &idx in subs {
            let Some((id, conn)) = self.conns.get_by_idx_mut(idx) else {
                continue;
            };
            if conn.resuming > 0
                && let Some(name) = &resuming
                && self.resuming.contains_key(&(id, name.clone()))
            {
                continue;
            }
            let frame = match (conn.transport, conn.framing) {
                (Transport::WebSocket, Framing::Json) => json
                    .get_or_insert_with(|| message_frame(channel, position, payload, binary))
                    .clone(),
                (Transport::WebSocket, Framing::Raw) => match &deflated {
                    Some(d) if conn.deflate_bits == FANOUT_WINDOW_BITS => d.clone(),
                    _ => frame.clone(),
                },
                (Transport::Sse, _) => sse
                    .get_or_insert_with(|| sse_event(position, payload, binary))
                    .clone(),
                (Transport::Poll, _) => {
                    polls.push(id);
                    continue;
                }
            };
            // What this frame would cost the queue: its bytes and its entry.
            let cost = frame.len() + ENTRY_OVERHEAD as usize;
            let queued = conn.queue.charged_bytes() as usize;
            if queued + cost > limit {
                match self.cfg.slow_consumer {
                    SlowConsumer::Close => {
                        slow.push(id);
                        continue;
                    }
                    SlowConsumer::DropOldest => {
                        let need = queued + cost - limit;
                        let dropped = conn.queue.drop_waiting_data(need);
                        self.counters.slow_consumer_dropped += dropped as u64;
                        if conn.queue.charged_bytes() as usize + cost > limit {
                            // Even with every waiting message gone it does not fit.
                            self.counters.slow_consumer_dropped += 1;
                            continue;
                        }
                    }
                }
            }
            conn.queue.push_data(frame);
            self.counters.delivered += 1;
            if !conn.in_ready && !conn.send_inflight {
                conn.in_ready = true;
                self.ready.push_back(id);
            }
        }
        for id in slow.drain(..) {
            self.counters.slow_consumer_closes += 1;
            let payload = close_payload(code::POLICY, "slow consumer");
            self.close_with(id, CloseReason::SlowConsumer, &payload, self.now_ms);
        }
        self.slow = slow;
        if !polls.is_empty() {
            let offset = position.map_or(0, |p| p.offset);
            let element = poll_element(offset, payload, binary);
            for id in polls.drain(..) {
                self.deliver_to_poll(id, &element, position);
            }
        }
        self.answered = polls;
    }
}
