//! `--resume`: what one connection number keeps across its reconnections so it can come
//! back where it left off. Its connections ask for the gateway's JSON framing
//! (`?format=json`), learn the channel's position from the `subscribed` object and from
//! every `message` object, and check that offsets follow each other with no gap and no
//! duplicate. When the server ends a connection (a drained node) the connection number
//! reconnects at once to the next URL of `--url`, with `since=<epoch>:<offset>`; a
//! reconnect that fails moves on to the next URL after a jittered backoff. The time from
//! the loss to the moment the client has everything it missed (the `subscribed` object's
//! offset reached) is the recovery latency.
//!
//! Sans-IO: the core calls [`Resume::on_text`] for every data message and the loss and
//! reconnect hooks; nothing here touches a socket or a clock.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::figures::Figures;
use crate::seq::{SeqEvent, SeqTracker};

/// First backoff after a failed reconnect; doubles per failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One JSON-framed object from the gateway (only the members wsload reads).
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    epoch: Option<Cow<'a, str>>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    recovered: Option<bool>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
}

/// What a JSON-framed data message was.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen<'a> {
    /// A channel message: its body, and what its offset says about order (`None` when
    /// the channel keeps no history and messages carry no position).
    Message {
        /// The `data` member (binary payloads carry none).
        body: Cow<'a, str>,
        /// Its offset against the last one.
        order: Option<SeqEvent>,
    },
    /// A `subscribed` object or anything else: not a channel message.
    Control,
    /// Not a JSON object of the framing (counted as a protocol error by the caller).
    Malformed,
}

/// Where one connection number is in its channel's history, kept across reconnections.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// Epoch of the last position (empty before the first).
    epoch: String,
    /// Offsets seen, checked for gaps and duplicates.
    offsets: SeqTracker,
    /// Last offset seen (0 before the first).
    offset: u64,
    /// Reconnections so far: the k-th connection of number i goes to URL `(i + k) % n`.
    turn: u32,
    /// Reconnects that failed in a row (for the backoff).
    failures: u32,
    /// When the last connection was lost, until the client caught up again.
    lost_at: Option<Instant>,
    /// The offset the resumed subscription said the client will be at once the
    /// recovered messages are in.
    catch_up_to: Option<u64>,
    /// Data messages received over all connections of this number.
    pub(crate) messages: u64,
    /// Link flags kept from one connection to the next (expectations and order).
    pub(crate) kept_flags: u16,
    /// The first connection opened (later ones are resumptions).
    pub(crate) opened: bool,
}

impl Resume {
    /// Which URL of `n` the connection number `index` uses now.
    pub(crate) fn target(&self, index: usize, n: usize) -> usize {
        (index + self.turn as usize) % n.max(1)
    }

    /// The query the next connection adds: JSON framing, and the position to resume
    /// from once one is known.
    pub(crate) fn query(&self) -> String {
        if self.epoch.is_empty() {
            "format=json".to_owned()
        } else {
            format!("format=json&since={}:{}", self.epoch, self.offset)
        }
    }

    /// The server ended the open connection at `now`: the next one goes to the next URL.
    pub(crate) fn on_lost(&mut self, now: Instant) {
        self.lost_at.get_or_insert(now);
        self.catch_up_to = None;
        self.turn = self.turn.wrapping_add(1);
    }

    /// A reconnect failed: the next try goes to the next URL after the returned backoff
    /// (the caller adds jitter).
    pub(crate) fn on_reconnect_failed(&mut self) -> Duration {
        self.turn = self.turn.wrapping_add(1);
        let backoff = FIRST_BACKOFF.saturating_mul(1 << self.failures.min(6));
        self.failures = self.failures.saturating_add(1);
        backoff.min(MAX_BACKOFF)
    }

    /// A connection opened.
    pub(crate) fn on_open(&mut self) {
        self.failures = 0;
    }

    /// One text message of a JSON-framed connection, received at `now`; counts resumes,
    /// losses and recovery latencies into `figures`.
    pub(crate) fn on_text<'a>(
        &mut self,
        payload: &'a [u8],
        now: Instant,
        figures: &mut Figures,
    ) -> Seen<'a> {
        let Ok(frame) = serde_json::from_slice::<Frame<'a>>(payload) else {
            return Seen::Malformed;
        };
        match frame.kind.as_ref() {
            "subscribed" => {
                self.on_subscribed(&frame, now, figures);
                Seen::Control
            }
            "message" => {
                let order = frame
                    .offset
                    .map(|offset| self.on_offset(frame.epoch.as_deref(), offset, figures));
                let body = frame.data.unwrap_or(Cow::Borrowed(""));
                self.check_caught_up(now, figures);
                Seen::Message { body, order }
            }
            _ => Seen::Control,
        }
    }

    fn on_subscribed(&mut self, frame: &Frame<'_>, now: Instant, figures: &mut Figures) {
        let (Some(epoch), Some(offset)) = (frame.epoch.as_deref(), frame.offset) else {
            // A channel without history: nothing to resume from.
            self.lost_at = None;
            return;
        };
        let counters = &mut figures.counters;
        match frame.recovered {
            None => {
                // A first subscription: from here on every offset must follow.
                self.restart_at(epoch, offset);
            }
            Some(true) => {
                counters.resume_recovered += 1;
                self.catch_up_to = Some(offset);
                self.check_caught_up(now, figures);
            }
            Some(false) => {
                counters.resume_not_recovered += 1;
                if epoch == self.epoch && offset > self.offset {
                    counters.seq_gaps += offset - self.offset;
                }
                self.restart_at(epoch, offset);
                self.check_caught_up(now, figures);
            }
        }
    }

    /// Forgets the order so far: the next offset must be `offset + 1` in `epoch`.
    fn restart_at(&mut self, epoch: &str, offset: u64) {
        epoch.clone_into(&mut self.epoch);
        self.offsets = SeqTracker::default();
        self.offsets.observe(offset);
        self.offset = offset;
        self.catch_up_to = Some(offset);
    }

    /// A message's offset (and epoch): how it follows the last one.
    fn on_offset(&mut self, epoch: Option<&str>, offset: u64, figures: &mut Figures) -> SeqEvent {
        if let Some(epoch) = epoch
            && epoch != self.epoch
        {
            // The history was lost while connected: a new generation starts here.
            if !self.epoch.is_empty() {
                figures.counters.resume_not_recovered += 1;
            }
            self.restart_at(epoch, offset.saturating_sub(1));
        }
        let order = self.offsets.observe(offset);
        self.offset = self.offset.max(offset);
        order
    }

    /// Records the recovery latency once the client has what the resumed subscription
    /// promised.
    fn check_caught_up(&mut self, now: Instant, figures: &mut Figures) {
        let (Some(lost_at), Some(target)) = (self.lost_at, self.catch_up_to) else {
            return;
        };
        if self.offset >= target {
            figures.counters.resume_caught_up += 1;
            figures
                .recovery_latency
                .record_ns(now.saturating_duration_since(lost_at).as_nanos() as u64);
            self.lost_at = None;
            self.catch_up_to = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(epoch: &str, offset: u64, data: &str) -> String {
        format!(
            r#"{{"type":"message","channel":"c","epoch":"{epoch}","offset":{offset},"data":"{data}"}}"#
        )
    }

    fn subscribed(epoch: &str, offset: u64, recovered: Option<bool>) -> String {
        let recovered = recovered.map_or(String::new(), |r| format!(r#","recovered":{r}"#));
        format!(
            r#"{{"type":"subscribed","channel":"c","epoch":"{epoch}","offset":{offset}{recovered}}}"#
        )
    }

    fn order(r: &mut Resume, text: &str, figures: &mut Figures) -> Option<SeqEvent> {
        match r.on_text(text.as_bytes(), Instant::now(), figures) {
            Seen::Message { order, .. } => order,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_first_subscription_sets_the_position_and_offsets_must_follow() {
        let (mut r, mut f) = (Resume::default(), Figures::default());
        assert_eq!(r.query(), "format=json");
        let t = Instant::now();
        assert_eq!(
            r.on_text(subscribed("E1", 4, None).as_bytes(), t, &mut f),
            Seen::Control
        );
        assert_eq!(
            order(&mut r, &message("E1", 5, "0:1:"), &mut f),
            Some(SeqEvent::InOrder)
        );
        assert_eq!(
            order(&mut r, &message("E1", 7, "x"), &mut f),
            Some(SeqEvent::Gap(1))
        );
        assert_eq!(
            order(&mut r, &message("E1", 7, "x"), &mut f),
            Some(SeqEvent::Dup)
        );
        assert_eq!(r.query(), "format=json&since=E1:7");
        assert_eq!(f.counters.resume_caught_up, 0, "nothing was lost");
    }

    #[test]
    fn a_resumed_subscription_catches_up_once_the_promised_offset_arrives() {
        let (mut r, mut f) = (Resume::default(), Figures::default());
        let t0 = Instant::now();
        r.on_text(subscribed("E1", 0, None).as_bytes(), t0, &mut f);
        order(&mut r, &message("E1", 1, "a"), &mut f);
        r.on_lost(t0);
        assert_eq!(r.target(3, 2), 0, "the next URL");
        r.on_text(subscribed("E1", 3, Some(true)).as_bytes(), t0, &mut f);
        assert_eq!(f.counters.resume_recovered, 1);
        assert_eq!(
            order(&mut r, &message("E1", 2, "b"), &mut f),
            Some(SeqEvent::InOrder)
        );
        assert_eq!(f.counters.resume_caught_up, 0);
        let later = t0 + Duration::from_millis(30);
        r.on_text(message("E1", 3, "c").as_bytes(), later, &mut f);
        assert_eq!(f.counters.resume_caught_up, 1);
        let latency = f.recovery_latency.summary().unwrap();
        assert!((latency.p50_ms - 30.0).abs() < 1.0, "{latency:?}");
    }

    #[test]
    fn nothing_missed_is_caught_up_at_the_subscription() {
        let (mut r, mut f) = (Resume::default(), Figures::default());
        let t0 = Instant::now();
        r.on_text(subscribed("E1", 2, None).as_bytes(), t0, &mut f);
        r.on_lost(t0);
        r.on_text(subscribed("E1", 2, Some(true)).as_bytes(), t0, &mut f);
        assert_eq!(f.counters.resume_caught_up, 1);
    }

    #[test]
    fn an_unrecovered_resume_is_counted_with_what_it_skipped() {
        let (mut r, mut f) = (Resume::default(), Figures::default());
        let t0 = Instant::now();
        r.on_text(subscribed("E1", 5, None).as_bytes(), t0, &mut f);
        r.on_lost(t0);
        r.on_text(subscribed("E1", 9, Some(false)).as_bytes(), t0, &mut f);
        assert_eq!(f.counters.resume_not_recovered, 1);
        assert_eq!(f.counters.seq_gaps, 4);
        assert_eq!(
            order(&mut r, &message("E1", 10, ""), &mut f),
            Some(SeqEvent::InOrder)
        );
        r.on_lost(t0);
        r.on_text(subscribed("E2", 1, Some(false)).as_bytes(), t0, &mut f);
        assert_eq!(f.counters.resume_not_recovered, 2);
        assert_eq!(
            f.counters.seq_gaps, 4,
            "another epoch: what was lost is unknown"
        );
        assert_eq!(r.query(), "format=json&since=E2:1");
    }

    #[test]
    fn failed_reconnects_move_on_with_a_growing_bounded_backoff() {
        let mut r = Resume::default();
        let backoffs: Vec<_> = (0..8).map(|_| r.on_reconnect_failed()).collect();
        assert_eq!(backoffs[0], FIRST_BACKOFF);
        assert_eq!(backoffs[1], FIRST_BACKOFF * 2);
        assert_eq!(*backoffs.last().unwrap(), MAX_BACKOFF);
        assert_eq!(r.target(0, 3), 8 % 3);
        r.on_open();
        assert_eq!(r.on_reconnect_failed(), FIRST_BACKOFF);
    }

    #[test]
    fn bad_or_foreign_objects_are_told_apart() {
        let (mut r, mut f) = (Resume::default(), Figures::default());
        let t = Instant::now();
        assert_eq!(r.on_text(b"not json", t, &mut f), Seen::Malformed);
        assert_eq!(r.on_text(br#"{"type":"pong"}"#, t, &mut f), Seen::Control);
        let escaped = br#"{"type":"message","channel":"c","data":"a\"b"}"#;
        match r.on_text(escaped, t, &mut f) {
            Seen::Message { body, order } => {
                assert_eq!(body, "a\"b");
                assert_eq!(order, None, "no position without history");
            }
            other => panic!("{other:?}"),
        }
    }
}
