//! The node's channel interest as the Redis broker tracks it: which channels have local
//! subscribers (wanted), which ones Redis confirmed on the current connection (active),
//! and which changed since the last batch (dirty). Changes that cancel out inside one
//! batch window cost no command at all; after a reconnect every wanted channel is dirty
//! again, so one pass resubscribes them all.

use std::collections::HashSet;
use std::sync::Arc;

/// Subscribe and unsubscribe work for one flush, in batches of at most `batch` channels.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Channels to subscribe to, one batch per command.
    pub(crate) subscribe: Vec<Vec<Arc<str>>>,
    /// Channels to unsubscribe from, one batch per command.
    pub(crate) unsubscribe: Vec<Vec<Arc<str>>>,
}

/// Wanted, active and dirty channels (names without the Redis prefix).
#[derive(Debug, Default)]
pub(crate) struct Interest {
    wanted: HashSet<Arc<str>>,
    active: HashSet<Arc<str>>,
    dirty: HashSet<Arc<str>>,
}

impl Interest {
    /// The node gained (`on`) or lost (`!on`) its local subscribers of `channel`.
    pub(crate) fn set(&mut self, channel: &str, on: bool) {
        let changed = if on {
            self.wanted.insert(Arc::from(channel))
        } else {
            self.wanted.remove(channel)
        };
        if changed {
            self.dirty.insert(Arc::from(channel));
        }
    }

    /// Whether the node has local subscribers of `channel`.
    pub(crate) fn wants(&self, channel: &str) -> bool {
        self.wanted.contains(channel)
    }

    /// Channels Redis confirmed on the current connection.
    pub(crate) fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Whether a flush has work to do.
    pub(crate) fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Takes the pending work: wanted-but-not-active channels to subscribe and
    /// active-but-not-wanted ones to unsubscribe, at most `batch` per command.
    pub(crate) fn take_changes(&mut self, batch: usize) -> Changes {
        let batch = batch.max(1);
        let mut subscribe = Vec::new();
        let mut unsubscribe = Vec::new();
        for channel in self.dirty.drain() {
            let wanted = self.wanted.contains(&channel);
            let active = self.active.contains(&channel);
            if wanted && !active {
                subscribe.push(channel);
            } else if !wanted && active {
                unsubscribe.push(channel);
            }
        }
        subscribe.sort_unstable();
        unsubscribe.sort_unstable();
        let chunk = |list: Vec<Arc<str>>| list.chunks(batch).map(<[_]>::to_vec).collect();
        Changes {
            subscribe: chunk(subscribe),
            unsubscribe: chunk(unsubscribe),
        }
    }

    /// Redis confirmed these subscriptions.
    pub(crate) fn subscribed(&mut self, channels: &[Arc<str>]) {
        self.active.extend(channels.iter().cloned());
    }

    /// Redis confirmed these unsubscriptions.
    pub(crate) fn unsubscribed(&mut self, channels: &[Arc<str>]) {
        for channel in channels {
            self.active.remove(channel);
        }
    }

    /// These channels' last change was not confirmed: consider them again at the next
    /// flush (whatever Redis did, the next flush converges on `wanted`).
    pub(crate) fn retry(&mut self, channels: &[Arc<str>]) {
        self.dirty.extend(channels.iter().cloned());
    }

    /// The connection is gone, and with it every subscription: all wanted channels must be
    /// subscribed again on the next one.
    pub(crate) fn connection_lost(&mut self) {
        self.active.clear();
        self.dirty.clear();
        self.dirty.extend(self.wanted.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(batches: &[Vec<Arc<str>>]) -> Vec<Vec<String>> {
        batches
            .iter()
            .map(|b| b.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn batches_new_interest_and_cancels_flapping() {
        let mut interest = Interest::default();
        for ch in ["c", "a", "b", "flap"] {
            interest.set(ch, true);
        }
        interest.set("flap", false);
        let changes = interest.take_changes(2);
        assert_eq!(names(&changes.subscribe), vec![vec!["a", "b"], vec!["c"]]);
        assert!(changes.unsubscribe.is_empty());
        assert!(!interest.has_changes());
        interest.subscribed(&changes.subscribe.concat());
        assert_eq!(interest.active_len(), 3);
        assert!(interest.wants("a") && !interest.wants("flap"));
    }

    #[test]
    fn unsubscribes_only_what_redis_has() {
        let mut interest = Interest::default();
        interest.set("a", true);
        let changes = interest.take_changes(10);
        interest.subscribed(&changes.subscribe.concat());
        interest.set("a", false);
        interest.set("never", false);
        let changes = interest.take_changes(10);
        assert!(changes.subscribe.is_empty());
        assert_eq!(names(&changes.unsubscribe), [["a"]]);
        interest.unsubscribed(&changes.unsubscribe.concat());
        assert_eq!(interest.active_len(), 0);
        assert_eq!(interest.take_changes(10), Changes::default());
    }

    #[test]
    fn a_lost_connection_resubscribes_everything_wanted() {
        let mut interest = Interest::default();
        for i in 0..2_500 {
            interest.set(&format!("ch-{i}"), true);
        }
        let first = interest.take_changes(1_000);
        assert_eq!(first.subscribe.len(), 3);
        interest.subscribed(&first.subscribe.concat());
        interest.set("ch-0", false);
        interest.connection_lost();
        assert_eq!(interest.active_len(), 0);
        let again = interest.take_changes(1_000);
        assert_eq!(again.subscribe.concat().len(), 2_499);
        assert!(again.unsubscribe.is_empty());
        assert!(!interest.wants("ch-0") && interest.wants("ch-1"));
    }

    #[test]
    fn unconfirmed_changes_are_sent_again() {
        let mut interest = Interest::default();
        interest.set("a", true);
        interest.set("b", true);
        let changes = interest.take_changes(10);
        interest.retry(&changes.subscribe.concat());
        let again = interest.take_changes(10);
        assert_eq!(names(&again.subscribe), [["a", "b"]]);
        interest.subscribed(&again.subscribe.concat());
        interest.set("a", false);
        let changes = interest.take_changes(10);
        interest.retry(&changes.unsubscribe.concat());
        assert_eq!(names(&interest.take_changes(10).unsubscribe), [["a"]]);
    }

    #[test]
    fn repeated_calls_are_idempotent() {
        let mut interest = Interest::default();
        interest.set("a", true);
        interest.set("a", true);
        interest.set("b", false);
        let changes = interest.take_changes(0);
        assert_eq!(names(&changes.subscribe), [["a"]]);
    }
}
