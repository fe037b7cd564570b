//! Which history an owned channel keeps: channels matched by `--history-channels` (when
//! `--history-size` > 0) keep `size` messages for `ttl` after their last publish;
//! other channels get a history only once a long-poll client asks for them (the
//! poll ring: `--poll-ring` messages, kept while polls keep coming), so long-poll
//! positions work with history off. Both stores share the per-shard byte cap setting
//! but count their own bytes.

use crate::channel_patterns::ChannelPatterns;
use crate::history::{EncodeElement, HistoryLimits, HistoryStore, Recovered, Recovery};
use crate::ids::ChannelName;
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

/// The histories of one shard's owned channels (see the module doc).
#[derive(Debug)]
pub(crate) struct ChannelHistories {
    channels: Option<ChannelPatterns>,
    kept: HistoryStore,
    polls: HistoryStore,
}

impl ChannelHistories {
    /// The stores for `cfg`; long-poll channels keep `poll_ring` messages for
    /// `poll_linger_ms` after their last poll or publish.
    pub(crate) fn new(cfg: &HistoryConfig, poll_ring: usize, poll_linger_ms: u64) -> Self {
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
            kept: HistoryStore::new(kept, cfg.epoch_seed),
            polls: HistoryStore::new(polls, !cfg.epoch_seed),
        }
    }

    /// Whether `channel` keeps history of its own (not only a poll ring).
    pub(crate) fn keeps(&self, channel: &str) -> bool {
        self.channels.as_ref().is_some_and(|c| c.matches(channel))
    }

    /// Keeps a message published to `channel`; its position, if the channel has a
    /// history.
    pub(crate) fn append(
        &mut self,
        channel: &ChannelName,
        payload: &Bytes,
        binary: bool,
        now_ms: u64,
    ) -> Option<Position> {
        if self.keeps(channel) {
            self.kept.append(channel, payload, binary, true, now_ms)
        } else {
            self.polls.append(channel, payload, binary, false, now_ms)
        }
    }

    /// A subscriber of `channel` asks for `since` (`poll`: a long poll, which starts
    /// the channel's poll ring, with the encoding its answers share). A channel with no history to answer from has no
    /// position, and a resume there is answered [`Recovery::None`].
    pub(crate) fn recover(
        &mut self,
        channel: &ChannelName,
        since: Option<Since>,
        poll: Option<EncodeElement<'_>>,
        now_ms: u64,
    ) -> Recovered {
        let found = if self.keeps(channel) {
            self.kept.recover(channel, since, true, false, poll, now_ms)
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
