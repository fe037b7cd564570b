//! The recent messages of the channels a shard owns, numbered with their positions,
//! so a client that comes back gets what it missed (or learns that it cannot).
//!
//! One [`HistoryStore`] keeps, per channel, an epoch, the last offset given out and up
//! to `size` messages. Channels are kept in the order they were last touched (published
//! to, or polled for the store of long-poll channels), so what expires (`ttl_ms` after
//! the last touch) and what the per-shard byte cap evicts first are both at the front:
//! each costs O(1) per channel dropped, never a scan. A history that is dropped and
//! later starts again gets a new epoch, so an old position never matches it.

use crate::ids::ChannelName;
use crate::position::{Epoch, Position, Since};
use bytes::Bytes;
use hashlink::LinkedHashMap;
use std::collections::VecDeque;

/// Bytes a kept message costs besides its payload and poll encoding (its entry and
/// the buffers' headers).
pub(crate) const KEPT_OVERHEAD: usize = 112;
/// Bytes a channel's history costs besides its name and messages.
pub(crate) const HISTORY_OVERHEAD: usize = 160;

/// How much a store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryLimits {
    /// Messages per channel (at least 1).
    pub(crate) size: usize,
    /// A channel's history is dropped this long after it was last touched.
    pub(crate) ttl_ms: u64,
    /// Bytes for all channels of the store; past it the least recently touched
    /// channels' histories are evicted.
    pub(crate) max_bytes: usize,
}

/// One kept message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Its offset in the channel's epoch.
    pub(crate) offset: u64,
    /// The message as published (shared with the frames made from it).
    pub(crate) payload: Bytes,
    /// Whether it goes out as binary.
    pub(crate) binary: bool,
    /// Its long-poll encoding, made once when a poll first asks for it and shared by
    /// every poll answer from then on (so pollers that hoard answers share one copy).
    pub(crate) element: Option<Bytes>,
}

/// Makes a kept message's long-poll encoding.
pub(crate) type EncodeElement<'a> = &'a dyn Fn(&Kept) -> Bytes;

impl Kept {
    fn cost(&self) -> usize {
        self.payload.len() + self.element.as_ref().map_or(0, Bytes::len) + KEPT_OVERHEAD
    }
}

/// How a resume request turned out (`ringcast_recoveries_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// Everything after the position was kept (or `since=last`).
    Full,
    /// Same epoch, but messages after the position are no longer kept.
    Partial,
    /// The position names another epoch (a lost history) or a point not reached yet.
    None,
}

impl Recovery {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Recovery::Full => "full",
            Recovery::Partial => "partial",
            Recovery::None => "none",
        }
    }

    /// Every label, for exporting the counters at zero.
    pub(crate) fn labels() -> [&'static str; 3] {
        [Recovery::Full, Recovery::Partial, Recovery::None].map(Recovery::label)
    }

    /// Whether the client got everything it missed.
    pub(crate) fn complete(self) -> bool {
        self == Recovery::Full
    }
}

/// The answer to a subscriber: where the channel is now and what it gets first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The channel's current position (the last offset given out); None when the
    /// channel keeps no history.
    pub(crate) position: Option<Position>,
    /// How the request turned out; None when the subscriber asked for nothing.
    pub(crate) result: Option<Recovery>,
    /// The kept messages to deliver before the live stream, in order (none unless
    /// the recovery is complete).
    pub(crate) messages: Vec<Kept>,
}

/// One channel's history.
#[derive(Debug)]
struct History {
    epoch: Epoch,
    last_offset: u64,
    touched_ms: u64,
    kept: VecDeque<Kept>,
    /// What it costs: its name, overhead and kept messages.
    bytes: usize,
}

impl History {
    /// Offset of the oldest kept message (one past the last when none is kept).
    fn first_kept(&self) -> u64 {
        self.last_offset + 1 - self.kept.len() as u64
    }
}

/// Draws epochs: a seed the binary picks at random at start-up (so a restarted node
/// never reuses one) mixed with a counter.
#[derive(Debug)]
struct EpochSource {
    seed: u64,
    drawn: u64,
}

impl EpochSource {
    fn next(&mut self) -> Epoch {
        self.drawn += 1;
        let mut x = self.seed ^ self.drawn.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        Epoch::from_bits(x)
    }
}

/// The histories of one shard's owned channels (see the module doc).
#[derive(Debug)]
pub(crate) struct HistoryStore {
    limits: HistoryLimits,
    /// Least recently touched first.
    histories: LinkedHashMap<ChannelName, History>,
    bytes: usize,
    messages: usize,
    /// Histories evicted by the byte cap so far.
    evictions: u64,
    epochs: EpochSource,
}

impl HistoryStore {
    /// A store with `limits`, drawing epochs from `seed`.
    pub(crate) fn new(limits: HistoryLimits, seed: u64) -> Self {
        HistoryStore {
            limits: HistoryLimits {
                size: limits.size.max(1),
                ..limits
            },
            histories: LinkedHashMap::new(),
            bytes: 0,
            messages: 0,
            evictions: 0,
            epochs: EpochSource { seed, drawn: 0 },
        }
    }

    /// Keeps a message published to `channel` and returns its position. Without
    /// `create`, only a channel that already has a history keeps it (None otherwise).
    pub(crate) fn append(
        &mut self,
        channel: &ChannelName,
        payload: &Bytes,
        binary: bool,
        create: bool,
        now_ms: u64,
    ) -> Option<Position> {
        if !create && !self.histories.contains_key(channel) {
            return None;
        }
        let size = self.limits.size;
        let history = self.touch(channel, now_ms);
        history.last_offset += 1;
        let kept = Kept {
            offset: history.last_offset,
            payload: payload.clone(),
            binary,
            element: None,
        };
        let mut freed = 0;
        let mut dropped = 0;
        if history.kept.len() == size
            && let Some(old) = history.kept.pop_front()
        {
            freed += old.cost();
            dropped += 1;
        }
        let added = kept.cost();
        history.kept.push_back(kept);
        history.bytes = history.bytes + added - freed;
        let position = Position {
            epoch: history.epoch,
            offset: history.last_offset,
        };
        self.bytes = self.bytes + added - freed;
        self.messages = self.messages + 1 - dropped;
        self.enforce_cap(channel);
        Some(position)
    }

    /// The answer to a subscriber of `channel` that asks for `since` (None: only its
    /// position). Without `create`, None when the channel has no history; with it, a
    /// channel without one starts an empty history here, so the subscriber learns
    /// the epoch its later messages will carry. `refresh` counts the request as a
    /// touch (the long-poll store: polls keep a channel's history alive). With
    /// `encode`, the messages answered carry their long-poll encoding, made here once
    /// and kept.
    pub(crate) fn recover(
        &mut self,
        channel: &ChannelName,
        since: Option<Since>,
        create: bool,
        refresh: bool,
        encode: Option<EncodeElement<'_>>,
        now_ms: u64,
    ) -> Option<Recovered> {
        if !self.histories.contains_key(channel) {
            if !create {
                return None;
            }
            self.touch(channel, now_ms);
            self.enforce_cap(channel);
        } else if refresh {
            self.touch(channel, now_ms);
        }
        let history = self.histories.get_mut(channel)?;
        let position = Position {
            epoch: history.epoch,
            offset: history.last_offset,
        };
        let encoding = encode.is_some();
        let (result, messages) = match since {
            None => (None, Vec::new()),
            Some(Since::Last) => {
                let skip = history.kept.len().saturating_sub(1);
                let kept = answered(history, skip, encode, &mut self.bytes);
                (Some(Recovery::Full), kept)
            }
            Some(Since::Unknown) => (Some(Recovery::None), Vec::new()),
            Some(Since::After(from))
                if from.epoch != history.epoch || from.offset > history.last_offset =>
            {
                (Some(Recovery::None), Vec::new())
            }
            Some(Since::After(from)) if from.offset + 1 < history.first_kept() => {
                (Some(Recovery::Partial), Vec::new())
            }
            Some(Since::After(from)) => {
                let skip = (from.offset + 1 - history.first_kept()) as usize;
                let kept = answered(history, skip, encode, &mut self.bytes);
                (Some(Recovery::Full), kept)
            }
        };
        if encoding {
            // The encodings made for this answer count against the cap too.
            self.enforce_cap(channel);
        }
        Some(Recovered {
            position: Some(position),
            result,
            messages,
        })
    }

    /// Keeps a message whose position the broker gave (the store is then a cache of
    /// what this node received): the next offset of the same epoch extends the kept
    /// run; a gap or another epoch starts the run again from this message (what came
    /// before it is not known here); an offset already passed is not kept. Creates the
    /// channel's history when missing.
    pub(crate) fn append_at(
        &mut self,
        channel: &ChannelName,
        position: Position,
        payload: &Bytes,
        binary: bool,
        now_ms: u64,
    ) {
        if position.offset == 0 {
            return;
        }
        let history = self.touch(channel, now_ms);
        let fresh = history.kept.is_empty() && history.last_offset == 0;
        let same_epoch = history.epoch == position.epoch;
        if same_epoch && position.offset <= history.last_offset {
            return;
        }
        let follows = same_epoch && position.offset == history.last_offset + 1;
        if !(fresh || follows) {
            // A gap or another epoch: the run starts again at this message.
            self.forget(channel);
        }
        let history = self.touch(channel, now_ms);
        history.epoch = position.epoch;
        history.last_offset = position.offset - 1;
        self.append(channel, payload, binary, true, now_ms);
    }

    /// Merges a history read from the broker into `channel`'s cache: the read run and
    /// the cached run (received since) join when they overlap or touch, and the kept run
    /// is the longest gapless one that ends at the newest offset either has (a read
    /// newer than a stale cache replaces it). In another epoch the cache wins when it has
    /// anything. False when the read ended before the cached run begins, leaving a gap
    /// (read again to close it).
    pub(crate) fn merge(
        &mut self,
        channel: &ChannelName,
        epoch: Epoch,
        read: Vec<Kept>,
        now_ms: u64,
    ) -> bool {
        let Some(read_last) = read.last().map(|k| k.offset) else {
            return true;
        };
        let cached: Vec<Kept> = match self.histories.get(channel) {
            Some(h) if !h.kept.is_empty() => {
                if h.epoch != epoch {
                    return true;
                }
                if h.first_kept() > read_last + 1 {
                    return false;
                }
                h.kept.iter().cloned().collect()
            }
            _ => Vec::new(),
        };
        // Every offset either run has (the cached copy wins), newest first, down to the
        // first hole.
        let mut by_offset: std::collections::BTreeMap<u64, Kept> =
            read.into_iter().map(|k| (k.offset, k)).collect();
        by_offset.extend(cached.into_iter().map(|k| (k.offset, k)));
        let mut run: Vec<Kept> = Vec::with_capacity(by_offset.len());
        for (offset, kept) in by_offset.into_iter().rev() {
            if run
                .last()
                .is_some_and(|newer: &Kept| newer.offset != offset + 1)
            {
                break;
            }
            run.push(kept);
        }
        self.forget(channel);
        self.touch(channel, now_ms).epoch = epoch;
        for kept in run.into_iter().rev() {
            if let Some(history) = self.histories.get_mut(channel) {
                history.last_offset = kept.offset - 1;
            }
            self.append(channel, &kept.payload, kept.binary, true, now_ms);
        }
        true
    }

    /// `channel`'s epoch, oldest kept offset and last offset, if it has a history.
    pub(crate) fn span(&self, channel: &str) -> Option<(Epoch, u64, u64)> {
        self.histories
            .get(channel)
            .map(|h| (h.epoch, h.first_kept(), h.last_offset))
    }

    /// Drops the histories not touched for the TTL. Costs O(histories dropped).
    pub(crate) fn expire(&mut self, now_ms: u64) {
        while let Some((_, history)) = self.histories.front() {
            if now_ms.saturating_sub(history.touched_ms) < self.limits.ttl_ms {
                break;
            }
            self.pop_front();
        }
    }

    /// Forgets `channel`'s history (its messages can no longer be known complete).
    pub(crate) fn forget(&mut self, channel: &str) {
        if let Some(history) = self.histories.remove(channel) {
            self.bytes -= history.bytes;
            self.messages -= history.kept.len();
        }
    }

    /// Messages kept.
    pub(crate) fn messages(&self) -> usize {
        self.messages
    }

    /// Bytes the kept histories cost (as the byte cap counts them).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Histories evicted by the byte cap since the store was made.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Channels with a history.
    #[cfg(test)]
    pub(crate) fn channels(&self) -> usize {
        self.histories.len()
    }

    /// `channel`'s history, created when missing, moved to the back as just touched.
    fn touch(&mut self, channel: &ChannelName, now_ms: u64) -> &mut History {
        if !self.histories.contains_key(channel) {
            let bytes = channel.len() + HISTORY_OVERHEAD;
            self.bytes += bytes;
            let history = History {
                epoch: self.epochs.next(),
                last_offset: 0,
                touched_ms: now_ms,
                kept: VecDeque::new(),
                bytes,
            };
            self.histories.insert(channel.clone(), history);
        }
        // Present: inserted above or found.
        let history = match self.histories.to_back(channel) {
            Some(history) => history,
            None => unreachable!("the history was just found or inserted"),
        };
        history.touched_ms = now_ms;
        history
    }

    /// Evicts the least recently touched histories other than `keep` while over the
    /// byte cap; if `keep` alone is over it, its oldest messages go (one stays).
    fn enforce_cap(&mut self, keep: &str) {
        while self.bytes > self.limits.max_bytes {
            match self.histories.front() {
                Some((name, _)) if &**name != keep => {
                    self.pop_front();
                    self.evictions += 1;
                }
                _ => break,
            }
        }
        if self.bytes <= self.limits.max_bytes {
            return;
        }
        if let Some(history) = self.histories.get_mut(keep) {
            while self.bytes > self.limits.max_bytes && history.kept.len() > 1 {
                if let Some(old) = history.kept.pop_front() {
                    history.bytes -= old.cost();
                    self.bytes -= old.cost();
                    self.messages -= 1;
                }
            }
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, history)) = self.histories.pop_front() {
            self.bytes -= history.bytes;
            self.messages -= history.kept.len();
        }
    }
}

/// `history`'s kept messages after the first `skip`, encoded for long polls first when
/// `encode` is given (what that adds is counted in `history` and `store_bytes`).
fn answered(
    history: &mut History,
    skip: usize,
    encode: Option<EncodeElement<'_>>,
    store_bytes: &mut usize,
) -> Vec<Kept> {
    if let Some(encode) = encode {
        for kept in history.kept.iter_mut().skip(skip) {
            if kept.element.is_none() {
                let element = encode(kept);
                history.bytes += element.len();
                *store_bytes += element.len();
                kept.element = Some(element);
            }
        }
    }
    history.kept.iter().skip(skip).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HistoryLimits = HistoryLimits {
        size: 3,
        ttl_ms: 1_000,
        max_bytes: usize::MAX,
    };

    fn store(limits: HistoryLimits) -> HistoryStore {
        HistoryStore::new(limits, 42)
    }

    fn publish(
        store: &mut HistoryStore,
        channel: &ChannelName,
        text: &str,
        now_ms: u64,
    ) -> Position {
        store
            .append(
                channel,
                &Bytes::copy_from_slice(text.as_bytes()),
                false,
                true,
                now_ms,
            )
            .expect("created")
    }

    fn offsets(recovered: &Recovered) -> Vec<u64> {
        recovered.messages.iter().map(|k| k.offset).collect()
    }

    #[test]
    fn offsets_count_up_without_gaps_in_one_epoch() {
        let mut s = store(LIMITS);
        let ch: ChannelName = "news".into();
        let positions: Vec<Position> = (0..5).map(|i| publish(&mut s, &ch, "m", i)).collect();
        assert_eq!(
            positions.iter().map(|p| p.offset).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert!(positions.iter().all(|p| p.epoch == positions[0].epoch));
        assert_eq!(s.messages(), 3, "size bounds the ring");
        let other = publish(&mut s, &"other".into(), "m", 5);
        assert_eq!(other.offset, 1);
        assert_ne!(
            other.epoch, positions[0].epoch,
            "each history has its own epoch"
        );
    }

    #[test]
    fn recovery_is_full_within_the_kept_window_and_says_so_outside_it() {
        let mut s = store(LIMITS);
        let ch: ChannelName = "news".into();
        let epoch = (0..5)
            .map(|i| publish(&mut s, &ch, "m", i))
            .last()
            .expect("5")
            .epoch;
        let ask = |s: &mut HistoryStore, offset| {
            s.recover(
                &ch,
                Some(Since::After(Position { epoch, offset })),
                false,
                false,
                None,
                9,
            )
            .expect("kept")
        };
        // Kept: 3, 4, 5.
        let r = ask(&mut s, 2);
        assert_eq!(
            (r.result, offsets(&r)),
            (Some(Recovery::Full), vec![3, 4, 5])
        );
        assert_eq!(r.position, Some(Position { epoch, offset: 5 }));
        assert_eq!(offsets(&ask(&mut s, 4)), vec![5]);
        let r = ask(&mut s, 5);
        assert_eq!((r.result, offsets(&r)), (Some(Recovery::Full), vec![]));
        let r = ask(&mut s, 1);
        assert_eq!(
            (r.result, offsets(&r)),
            (Some(Recovery::Partial), vec![]),
            "message 2 is gone"
        );
        assert_eq!(
            ask(&mut s, 6).result,
            Some(Recovery::None),
            "a point not reached yet"
        );
        let stranger = Position {
            epoch: Epoch::from_bits(7),
            offset: 4,
        };
        let r = s
            .recover(&ch, Some(Since::After(stranger)), false, false, None, 9)
            .expect("kept");
        assert_eq!((r.result, offsets(&r)), (Some(Recovery::None), vec![]));
        let last = s
            .recover(&ch, Some(Since::Last), false, false, None, 9)
            .expect("kept");
        assert_eq!(
            (last.result, offsets(&last)),
            (Some(Recovery::Full), vec![5])
        );
        let plain = s.recover(&ch, None, false, false, None, 9).expect("kept");
        assert_eq!((plain.result, offsets(&plain)), (None, vec![]));
    }

    #[test]
    fn an_expired_history_starts_again_in_a_new_epoch() {
        let mut s = store(LIMITS);
        let ch: ChannelName = "news".into();
        let first = publish(&mut s, &ch, "a", 0);
        s.expire(999);
        assert_eq!(
            publish(&mut s, &ch, "b", 999).epoch,
            first.epoch,
            "touched at 999"
        );
        s.expire(1_998);
        assert_eq!(s.messages(), 2);
        s.expire(1_999);
        assert_eq!((s.messages(), s.bytes(), s.channels()), (0, 0, 0));
        let again = publish(&mut s, &ch, "c", 2_000);
        assert_eq!(again.offset, 1);
        assert_ne!(again.epoch, first.epoch);
        let old = Since::After(Position { offset: 2, ..first });
        assert_eq!(
            s.recover(&ch, Some(old), false, false, None, 2_000)
                .map(|r| r.result),
            Some(Some(Recovery::None))
        );
    }

    #[test]
    fn the_byte_cap_evicts_the_least_recently_published_channels_first() {
        // Each channel: name (2) + overhead, one message of 100 bytes.
        let per_channel = 2 + HISTORY_OVERHEAD + 100 + KEPT_OVERHEAD;
        // Room for three such channels and one empty message.
        let cap = per_channel * 3 + KEPT_OVERHEAD;
        let mut s = store(HistoryLimits {
            max_bytes: cap,
            ..LIMITS
        });
        let names: Vec<ChannelName> = (0..4).map(|i| format!("c{i}").as_str().into()).collect();
        let body = "x".repeat(100);
        for (i, name) in names.iter().take(3).enumerate() {
            publish(&mut s, name, &body, i as u64);
        }
        // c0 is published to again, so c1 is now the least recently touched.
        publish(&mut s, &names[0], "", 3);
        publish(&mut s, &names[3], &body, 4);
        assert_eq!(s.evictions(), 1);
        assert!(
            s.recover(&names[1], None, false, false, None, 5).is_none(),
            "c1 evicted"
        );
        for kept in [&names[0], &names[2], &names[3]] {
            assert!(s.recover(kept, None, false, false, None, 5).is_some());
        }
        assert!(s.bytes() <= cap);
        // One channel over the cap alone keeps only its newest messages.
        let mut s = store(HistoryLimits {
            size: 100,
            max_bytes: per_channel * 2,
            ..LIMITS
        });
        for i in 0..10 {
            publish(&mut s, &names[0], &body, i);
        }
        assert_eq!((s.messages(), s.evictions()), (2, 0));
        assert!(s.bytes() <= per_channel * 2);
    }

    #[test]
    fn without_create_only_existing_histories_keep_messages() {
        let mut s = store(LIMITS);
        let ch: ChannelName = "poll".into();
        assert_eq!(
            s.append(&ch, &Bytes::from_static(b"a"), false, false, 0),
            None
        );
        assert!(s.recover(&ch, None, false, true, None, 0).is_none());
        let start = s
            .recover(&ch, None, true, true, None, 0)
            .expect("created")
            .position
            .expect("kept");
        assert_eq!(start.offset, 0);
        let p = s
            .append(&ch, &Bytes::from_static(b"b"), false, false, 1)
            .expect("kept");
        assert_eq!((p.epoch, p.offset), (start.epoch, 1));
        // Polls refresh the TTL of this store.
        s.recover(&ch, None, false, true, None, 900);
        s.expire(1_500);
        assert_eq!(s.messages(), 1);
        s.forget("poll");
        assert_eq!((s.messages(), s.bytes()), (0, 0));
    }

    fn at(epoch: Epoch, offset: u64) -> Position {
        Position { epoch, offset }
    }

    fn cached(s: &mut HistoryStore, ch: &ChannelName, p: Position) {
        s.append_at(ch, p, &Bytes::from(p.offset.to_string()), false, 0);
    }

    fn read(offsets: std::ops::RangeInclusive<u64>) -> Vec<Kept> {
        offsets
            .map(|offset| Kept {
                offset,
                payload: Bytes::from(offset.to_string()),
                binary: false,
                element: None,
            })
            .collect()
    }

    #[test]
    fn broker_positions_extend_the_cached_run_and_a_gap_restarts_it() {
        let mut s = store(HistoryLimits { size: 10, ..LIMITS });
        let ch: ChannelName = "c".into();
        let e = Epoch::from_bits(5);
        for o in 7..=9 {
            cached(&mut s, &ch, at(e, o));
        }
        assert_eq!(s.span("c"), Some((e, 7, 9)));
        cached(&mut s, &ch, at(e, 9));
        assert_eq!(
            s.messages(),
            3,
            "an offset already passed is not kept twice"
        );
        cached(&mut s, &ch, at(e, 12));
        assert_eq!(
            s.span("c"),
            Some((e, 12, 12)),
            "10 and 11 never came: the run restarts"
        );
        let other = Epoch::from_bits(6);
        cached(&mut s, &ch, at(other, 1));
        assert_eq!(s.span("c"), Some((other, 1, 1)));
        assert_eq!(s.messages(), 1);
    }

    #[test]
    fn a_read_history_joins_the_cached_run_without_gap_or_duplicate() {
        let mut s = store(HistoryLimits {
            size: 100,
            ..LIMITS
        });
        let ch: ChannelName = "c".into();
        let e = Epoch::from_bits(5);
        // Received on the subscription while the read was on its way: 8..=10.
        for o in 8..=10 {
            cached(&mut s, &ch, at(e, o));
        }
        // The read saw 1..=9 (it overlaps the cached run).
        assert!(s.merge(&ch, e, read(1..=9), 0));
        assert_eq!(s.span("c"), Some((e, 1, 10)));
        let all = s
            .recover(&ch, Some(Since::After(at(e, 0))), false, false, None, 0)
            .expect("kept");
        assert_eq!(offsets(&all), (1..=10).collect::<Vec<_>>());
        let payloads: Vec<String> = all
            .messages
            .iter()
            .map(|k| String::from_utf8_lossy(&k.payload).into_owned())
            .collect();
        assert_eq!(
            payloads,
            (1..=10).map(|o| o.to_string()).collect::<Vec<_>>()
        );
        // A read that ends before the cached run starts leaves a gap: read again.
        let mut s = store(HistoryLimits {
            size: 100,
            ..LIMITS
        });
        cached(&mut s, &ch, at(e, 20));
        assert!(!s.merge(&ch, e, read(1..=18), 0));
        assert_eq!(s.span("c"), Some((e, 20, 20)), "unchanged");
        assert!(s.merge(&ch, e, read(1..=19), 0));
        assert_eq!(s.span("c"), Some((e, 1, 20)));
        // A stale cache (the node stopped receiving the channel for a while) and a
        // read that runs past it: the read's newer messages are kept, the hole drops
        // the stale run.
        let mut s = store(HistoryLimits {
            size: 100,
            ..LIMITS
        });
        for o in 2..=3 {
            cached(&mut s, &ch, at(e, o));
        }
        assert!(s.merge(&ch, e, read(3..=7), 0));
        assert_eq!(s.span("c"), Some((e, 2, 7)), "touching runs join");
        assert!(s.merge(&ch, e, read(10..=12), 0));
        assert_eq!(s.span("c"), Some((e, 10, 12)), "a newer read replaces");
        // Nothing cached: the read becomes the cache.
        let mut s = store(HistoryLimits {
            size: 100,
            ..LIMITS
        });
        assert!(s.merge(&ch, e, read(3..=5), 0));
        assert_eq!(s.span("c"), Some((e, 3, 5)));
        assert_eq!(s.bytes(), 1 + HISTORY_OVERHEAD + 3 * (1 + KEPT_OVERHEAD));
    }
}
