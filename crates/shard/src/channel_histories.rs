//! Which history an owned channel keeps: channels matched by `--history-channels` (when
//! `--history-size` > 0) keep `size` messages for `ttl` after their last publish;
//! other channels get a history only once a long-poll client asks for them (the
//! poll ring: `--poll-ring` messages, kept while polls keep coming), so long-poll
//! positions work with history off. Both stores share the per-shard byte cap setting
//! but count their own bytes.
//!
//! With a broker that keeps the history (Redis), positions come from the broker and the
//! history channels' store is a cache of what this node received: a resume it cannot
//! answer (the position is older than the cached run, or nothing is cached) is
//! answered [`Answer::Fetch`]: read the broker's history, [`ChannelHistories::merge`] it,
//! then answer from the cache. A position ahead of the cache (same epoch) is read too:
//! another node delivered a message this one has not received yet.

use crate::channel_patterns::ChannelPatterns;
use crate::history::{EncodeElement, HistoryLimits, HistoryStore, Kept, Recovered, Recovery};
use crate::ids::ChannelName;
use crate::messages::FetchedHistory;
use crate::position::{Position, Since};
use bytes::Bytes;

/// The history settings of one shard.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Messages kept per history channel; 0 = no history (long-poll channels still
    /// keep their poll ring).
    pub size: usize,
    /// A history channel's messages are dropped this long after its last publish.
    pub ttl_ms: u64,
    /// Bytes of history one shard keeps (each store), oldest channels evicted first.
    pub max_bytes: usize,
    /// The channels that keep history (empty: all).
    pub channels: ChannelPatterns,
    /// Random bits from the binary, drawn at start-up, that make every epoch this
    /// process draws new.
    pub epoch_seed: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            size: 0,
            ttl_ms: 300_000,
            max_bytes: 64 << 20,
            channels: ChannelPatterns::default(),
            epoch_seed: 0,
        }
    }
}

/// How a resume request is answered.
#[derive(Debug)]
pub(crate) enum Answer {
    /// From what this shard keeps.
    Ready(Recovered),
    /// Only after reading the broker's history.
    Fetch,
}

/// The histories of one shard's owned channels (see the module doc).
#[derive(Debug)]
pub(crate) struct ChannelHistories {
    channels: Option<ChannelPatterns>,
    /// Positions come from the broker; the history store is a cache.
    from_broker: bool,
    kept: HistoryStore,
    polls: HistoryStore,
}

impl ChannelHistories {
    /// The stores for `cfg`; long-poll channels keep `poll_ring` messages for
    /// `poll_linger_ms` after their last poll or publish.
    /// `from_broker`: positions come from the broker (Redis), not from this shard.
    pub(crate) fn new(
        cfg: &HistoryConfig,
        poll_ring: usize,
        poll_linger_ms: u64,
        from_broker: bool,
    ) -> Self {
        let kept = HistoryLimits {
            size: cfg.size,
            ttl_ms: cfg.ttl_ms,
            max_bytes: cfg.max_bytes,
        };
        let polls = HistoryLimits {
            size: poll_ring,
            ttl_ms: poll_linger_ms,
            max_bytes: cfg.max_bytes,
        };
        ChannelHistories {
            channels: (cfg.size > 0).then(|| cfg.channels.clone()),
            from_broker,
            kept: HistoryStore::new(kept, cfg.epoch_seed),
            polls: HistoryStore::new(polls, !cfg.epoch_seed),
        }
    }

    /// `channel`'s last position, if a history (or a poll ring) of it is kept here.
    pub(crate) fn last_position(&self, channel: &str) -> Option<Position> {
        let (epoch, _, offset) = self
            .kept
            .span(channel)
            .or_else(|| self.polls.span(channel))?;
        Some(Position { epoch, offset })
    }

    /// Whether `channel` keeps history of its own (not only a poll ring).
    pub(crate) fn keeps(&self, channel: &str) -> bool {
        self.channels.as_ref().is_some_and(|c| c.matches(channel))
    }

    /// Keeps a message published to `channel` (at `position`, when the broker gave
    /// it one); its position, if the channel has a history.
    pub(crate) fn append(
        &mut self,
        channel: &ChannelName,
        payload: &Bytes,
        binary: bool,
        position: Option<Position>,
        now_ms: u64,
    ) -> Option<Position> {
        match (self.keeps(channel), position) {
            (true, Some(at)) => {
                self.kept.append_at(channel, at, payload, binary, now_ms);
                Some(at)
            }
            // Without a position from a broker that gives them (a foreign publish, or
            // one delivered locally while Redis was away): outside the history.
            (true, None) if self.from_broker => None,
            (true, None) => self.kept.append(channel, payload, binary, true, now_ms),
            (false, _) => self.polls.append(channel, payload, binary, false, now_ms),
        }
    }

    /// Merges the broker's history of `channel` into the cache; false when a gap
    /// remains between what was read and what was received since (read again).
    pub(crate) fn merge(
        &mut self,
        channel: &ChannelName,
        fetched: FetchedHistory,
        now_ms: u64,
    ) -> bool {
        let Some(epoch) = fetched.epoch else {
            return true;
        };
        let read = fetched
            .messages
            .into_iter()
            .map(|(offset, payload, binary)| Kept {
                offset,
                payload,
                binary,
                element: None,
            })
            .collect();
        self.kept.merge(channel, epoch, read, now_ms)
    }

    /// A subscriber of `channel` asks for `since` (`poll`: a long poll, which starts
    /// the channel's poll ring, with the encoding its answers share). A channel with no history to answer from has no
    /// position, and a resume there is answered [`Recovery::None`].
    pub(crate) fn recover(
        &mut self,
        channel: &ChannelName,
        since: Option<Since>,
        poll: Option<EncodeElement<'_>>,
        fetched: bool,
        now_ms: u64,
    ) -> Answer {
        if self.keeps(channel) && self.from_broker && !fetched && self.needs_fetch(channel, since) {
            return Answer::Fetch;
        }
        Answer::Ready(self.recover_here(channel, since, poll, now_ms))
    }

    /// Whether the broker's history could answer `since` better than the cache.
    fn needs_fetch(&self, channel: &str, since: Option<Since>) -> bool {
        match (self.kept.span(channel), since) {
            (_, Some(Since::Unknown)) => false,
            (None, _) => true,
            // Older than the cached run, or ahead of it: a client that got a message
            // on another node before this node received it (a rolling restart moves
            // clients at the moment nodes disagree by a message or two).
            (Some((epoch, first, last)), Some(Since::After(p))) => {
                p.epoch == epoch && (p.offset + 1 < first || p.offset > last)
            }
            (Some(_), _) => false,
        }
    }

    /// Answers from what this shard keeps.
    fn recover_here(
        &mut self,
        channel: &ChannelName,
        since: Option<Since>,
        poll: Option<EncodeElement<'_>>,
        now_ms: u64,
    ) -> Recovered {
        let found = if self.keeps(channel) {
            let create = !self.from_broker;
            self.kept
                .recover(channel, since, create, false, poll, now_ms)
        } else {
            let polled = poll.is_some();
            self.polls
                .recover(channel, since, polled, polled, poll, now_ms)
        };
        found.unwrap_or_else(|| Recovered {
            position: None,
            result: since.map(|_| Recovery::None),
            messages: Vec::new(),
        })
    }

    /// Drops what outlived its TTL.
    pub(crate) fn expire(&mut self, now_ms: u64) {
        self.kept.expire(now_ms);
        self.polls.expire(now_ms);
    }

    /// Forgets `channel`'s history.
    pub(crate) fn forget(&mut self, channel: &str) {
        self.kept.forget(channel);
        self.polls.forget(channel);
    }

    /// Messages kept, bytes they cost, and histories evicted by the byte cap.
    pub(crate) fn gauges(&self) -> (usize, usize, u64) {
        (
            self.kept.messages() + self.polls.messages(),
            self.kept.bytes() + self.polls.bytes(),
            self.kept.evictions() + self.polls.evictions(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Epoch;

    fn cache() -> ChannelHistories {
        let cfg = HistoryConfig {
            size: 10,
            ..HistoryConfig::default()
        };
        ChannelHistories::new(&cfg, 0, 0, true)
    }

    fn after(epoch: Epoch, offset: u64) -> Option<Since> {
        Some(Since::After(Position { epoch, offset }))
    }

    #[test]
    fn a_position_ahead_of_the_cache_is_read_from_the_broker_not_refused() {
        let mut h = cache();
        let ch: ChannelName = "c".into();
        let e = Epoch::from_bits(9);
        for offset in 1..=5 {
            h.append(
                &ch,
                &Bytes::from("m"),
                false,
                Some(Position { epoch: e, offset }),
                0,
            );
        }
        assert!(matches!(
            h.recover(&ch, after(e, 5), None, false, 0),
            Answer::Ready(_)
        ));
        assert!(matches!(
            h.recover(&ch, after(e, 6), None, false, 0),
            Answer::Fetch
        ));
        // The read (behind the push of 6 that the other node had delivered) answers it.
        h.append(
            &ch,
            &Bytes::from("m"),
            false,
            Some(Position {
                epoch: e,
                offset: 6,
            }),
            0,
        );
        let fetched = FetchedHistory {
            epoch: Some(e),
            messages: (1..=6).map(|o| (o, Bytes::from("m"), false)).collect(),
        };
        assert!(h.merge(&ch, fetched, 0));
        let Answer::Ready(answer) = h.recover(&ch, after(e, 6), None, true, 0) else {
            panic!("answered after the read");
        };
        assert_eq!(answer.result, Some(Recovery::Full));
        assert!(answer.messages.is_empty());
        // Still ahead after the read: a position nobody gave, not recovered.
        let Answer::Ready(answer) = h.recover(&ch, after(e, 9), None, true, 0) else {
            panic!("answered after the read");
        };
        assert_eq!(answer.result, Some(Recovery::None));
    }
}
