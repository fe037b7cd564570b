//! The per-address budget of channels that long polls and event streams make their
//! owners create: a request for a channel this shard has no subscriber of (and does not
//! own already) costs a token of its source address, and over the budget it is answered
//! 429 before anything is created. The owner may be another shard, so the count is kept
//! where the peer is known: here.

use super::Shard;
use crate::handshake_failure::HandshakeFailure;
use crate::ids::ConnId;
use ringcast_proto::http_error_response;

impl Shard {
    /// Refuses (429, counted) a poll or event stream of `channel` when it would need a
    /// new channel and its address is over its rate. True when refused.
    pub(super) fn refuse_channel_creation(
        &mut self,
        id: ConnId,
        channel: &str,
        now_ms: u64,
    ) -> bool {
        // Nothing is created for a channel with local subscribers, or owned here.
        if self.channels.slot_of(channel).is_some() || self.owned.owns(channel) {
            return false;
        }
        let Some(ip) = self.conns.get_mut(id).and_then(|c| c.peer()) else {
            return false;
        };
        if self.channel_limiter.allow(ip, now_ms) {
            return false;
        }
        let response = http_error_response(429, "Too Many Requests", "too many new channels\n");
        self.fail_handshake(id, HandshakeFailure::ChannelRateLimited, response, now_ms);
        true
    }
}
