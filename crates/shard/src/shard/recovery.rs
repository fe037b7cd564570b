//! Resuming a subscription: a subscriber that names a position (`since=`,
//! `Last-Event-ID`) or needs the channel's position (JSON framing, long poll) asks the
//! channel's owner, which answers from its history on the same FIFO lane as the
//! channel's deliveries. So every delivery that reaches the subscriber's shard before
//! the answer is one the answer covers, and every later one is newer: until the answer
//! arrives the connection skips the channel's deliveries (`resuming`), then it gets the
//! kept messages and the live stream continues with no gap and no duplicate.
//!
//! What a connection missed is queued only up to `--max-queue-bytes`; past that it
//! gets what fitted and is closed (WebSocket 1013, an SSE stream ends) so it resumes
//! again from where it got to.

use super::Shard;
use super::json_framing::{message_frame, subscribed_frame};
use super::poll::poll_element;
use super::sse::{sse_event, sse_reset};
use crate::channel_histories::Answer;
use crate::close_reason::CloseReason;
use crate::conn::{Framing, Phase, Transport};
use crate::history::{EncodeElement, Kept, Recovered};
use crate::ids::{ChannelName, ConnId};
use crate::messages::{BrokerCmd, FetchedHistory, ShardMsg};
use crate::position::{Position, Since};
use crate::write_queue::ENTRY_OVERHEAD;
use bytes::Bytes;
use ringcast_proto::{OpCode, close_payload, code};

/// Reads of the broker's history for one recovery before it is answered from what
/// is there.
const MAX_READS: u8 = 3;

/// A subscriber's resume request, at the owner.
#[derive(Debug, Clone, Copy)]
pub(super) struct Resume {
    since: Option<Since>,
    poll: bool,
    shard: u16,
    conn: ConnId,
}

/// The resume requests of one channel waiting for the broker's history (one read at a
/// time per channel, however many clients resume at once).
#[derive(Debug, Default)]
pub(super) struct Reading {
    waiting: Vec<Resume>,
    reads: u8,
}

impl Shard {
    /// Subscribes `id` to `name`, resuming from `since`; false if it already was or is
    /// at its channel limit. A JSON-framed connection always asks the owner, to learn
    /// the channel's position for its `subscribed` object.
    pub(super) fn subscribe_from(&mut self, id: ConnId, name: &str, since: Option<Since>) -> bool {
        if !self.subscribe(id, name) {
            return false;
        }
        let json = self
            .conns
            .get_mut(id)
            .is_some_and(|c| c.transport == Transport::WebSocket && c.framing == Framing::Json);
        if since.is_some() || json {
            self.request_history(id, name, since, false);
        }
        true
    }

    /// Asks `name`'s owner for what `id` should get before the live stream. Until the
    /// answer, a connection that is not a long poll skips the channel's deliveries.
    pub(super) fn request_history(
        &mut self,
        id: ConnId,
        name: &str,
        since: Option<Since>,
        poll: bool,
    ) {
        let channel = self
            .channels
            .shared_name(name)
            .unwrap_or_else(|| ChannelName::from(name));
        if !poll {
            *self.resuming.entry((id, channel.clone())).or_default() += 1;
            if let Some(conn) = self.conns.get_mut(id) {
                conn.resuming = conn.resuming.saturating_add(1);
            }
        }
        let owner = self.owner(&channel);
        let request = ShardMsg::HistoryRequest {
            channel,
            since,
            poll,
            shard: self.cfg.id,
            conn: id,
        };
        self.route(owner, request);
    }

    /// At the owner: answers a subscriber from the channel's history.
    pub(super) fn history_request(
        &mut self,
        channel: ChannelName,
        since: Option<Since>,
        poll: bool,
        shard: u16,
        conn: ConnId,
        now_ms: u64,
    ) {
        if poll {
            self.owned.poll(&channel, now_ms);
        }
        let request = Resume {
            since,
            poll,
            shard,
            conn,
        };
        self.answer_resume(&channel, request, false, now_ms);
    }

    /// At the owner: answers `request` from the history, or (when the broker's history
    /// must be read first) queues it behind the channel's one read in flight.
    fn answer_resume(
        &mut self,
        channel: &ChannelName,
        request: Resume,
        fetched: bool,
        now_ms: u64,
    ) {
        let encode = |kept: &Kept| poll_element(kept.offset, &kept.payload, kept.binary);
        let encode: Option<EncodeElement<'_>> = request.poll.then_some(&encode);
        match self
            .histories
            .recover(channel, request.since, encode, fetched, now_ms)
        {
            Answer::Ready(recovered) => {
                let reply = ShardMsg::HistoryReply {
                    conn: request.conn,
                    channel: channel.clone(),
                    recovered,
                };
                self.route(request.shard, reply);
            }
            Answer::Fetch => {
                let reading = self.fetching.entry(channel.clone()).or_default();
                reading.waiting.push(request);
                if reading.waiting.len() == 1 {
                    self.command_broker(BrokerCmd::FetchHistory(channel.clone()));
                }
            }
        }
    }

    /// At the owner: the broker's history of `channel` arrived. Merged into the cache,
    /// it answers every resume that waited for it; a gap left between what was read
    /// and what arrived since is read again (a few times at most).
    pub(super) fn history_fetched(
        &mut self,
        channel: &ChannelName,
        fetched: Option<FetchedHistory>,
        now_ms: u64,
    ) {
        let joined = fetched.is_none_or(|f| self.histories.merge(channel, f, now_ms));
        let Some(reading) = self.fetching.get_mut(channel) else {
            return;
        };
        reading.reads += 1;
        if !joined && reading.reads < MAX_READS {
            self.command_broker(BrokerCmd::FetchHistory(channel.clone()));
            return;
        }
        let waiting = self
            .fetching
            .remove(channel)
            .map(|r| r.waiting)
            .unwrap_or_default();
        for request in waiting {
            self.answer_resume(channel, request, true, now_ms);
        }
    }

    /// The owner's answer for `id`'s subscription to `channel`.
    pub(super) fn history_reply(
        &mut self,
        id: ConnId,
        channel: &ChannelName,
        recovered: Recovered,
        now_ms: u64,
    ) {
        let transport = self.conns.get_mut(id).map(|c| c.transport);
        if transport == Some(Transport::Poll) {
            self.poll_reply(id, recovered, now_ms);
            return;
        }
        self.stop_resuming(id, channel);
        let slot = self.channels.slot_of(channel);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let subscribed = slot.is_some_and(|slot| conn.channels.contains(slot));
        if conn.phase != Phase::Open || !subscribed {
            return;
        }
        let transport = conn.transport;
        if let Some(result) = recovered.result {
            self.counters.recovered(transport.label(), result.label());
        }
        let complete = recovered.result.is_none_or(|r| r.complete());
        let mut frames: Vec<Bytes> = Vec::new();
        match (transport, conn.framing) {
            (Transport::WebSocket, Framing::Json) => {
                frames.push(subscribed_frame(
                    channel,
                    recovered.position,
                    recovered.result,
                ));
            }
            (Transport::Sse, _) if !complete => frames.push(sse_reset(recovered.position)),
            _ => {}
        }
        let messages = if complete {
            &recovered.messages[..]
        } else {
            &[]
        };
        let first_message = frames.len();
        if let Some(at) = recovered.position {
            for kept in messages {
                let position = Position {
                    epoch: at.epoch,
                    offset: kept.offset,
                };
                frames.push(recovery_frame(
                    channel,
                    transport,
                    conn.framing,
                    position,
                    kept,
                ));
            }
        }
        self.queue_recovery(id, frames, first_message, now_ms);
    }

    /// Queues a recovery's frames (its messages from `first_message` on) up to the
    /// queue limit; what does not fit closes the connection so it resumes again.
    fn queue_recovery(
        &mut self,
        id: ConnId,
        frames: Vec<Bytes>,
        first_message: usize,
        now_ms: u64,
    ) {
        let limit = self.cfg.max_queue_bytes as usize;
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let mut overflow = false;
        for (i, frame) in frames.into_iter().enumerate() {
            let cost = frame.len() + ENTRY_OVERHEAD as usize;
            if i >= first_message && conn.queue.charged_bytes() as usize + cost > limit {
                overflow = true;
                break;
            }
            conn.queue.push_data(frame);
            if i >= first_message {
                self.counters.delivered += 1;
            }
        }
        if overflow {
            // After what was queued: the client resumes from the last message it got.
            if conn.transport == Transport::WebSocket {
                let payload = close_payload(code::TRY_AGAIN_LATER, "resume from the last message");
                conn.queue
                    .push_final(super::encoded(OpCode::Close, &payload));
            }
            self.begin_close(id, CloseReason::RecoveryTooLarge, now_ms);
        } else {
            self.mark_ready(id);
        }
    }

    /// `id` no longer waits for the owner's answer about `channel`.
    fn stop_resuming(&mut self, id: ConnId, channel: &ChannelName) {
        let key = (id, channel.clone());
        if let Some(waiting) = self.resuming.get_mut(&key) {
            *waiting -= 1;
            if *waiting == 0 {
                self.resuming.remove(&key);
            }
        }
        if let Some(conn) = self.conns.get_mut(id) {
            conn.resuming = conn.resuming.saturating_sub(1);
        }
    }
}

/// One kept message as `transport` and `framing` deliver it.
fn recovery_frame(
    channel: &str,
    transport: Transport,
    framing: Framing,
    position: Position,
    kept: &Kept,
) -> Bytes {
    let position = Some(position);
    match (transport, framing) {
        (Transport::Sse, _) => sse_event(position, &kept.payload, kept.binary),
        (_, Framing::Json) => message_frame(channel, position, &kept.payload, kept.binary),
        (_, Framing::Raw) => {
            let opcode = if kept.binary {
                OpCode::Binary
            } else {
                OpCode::Text
            };
            super::encoded(opcode, &kept.payload)
        }
    }
}
