//! The node's subscription changes on their way from the broker handle to the connection
//! task. Not a queue of every change but the latest state per channel (only that matters:
//! the task converges on what is wanted), so it is bounded by the number of channels and a
//! busy task (waiting on Redis or on full shard inboxes) never makes it grow further.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// Channels whose interest changed since the task last looked, with the latest state.
#[derive(Debug, Default)]
pub(crate) struct InterestQueue {
    latest: Mutex<HashMap<Box<str>, bool>>,
    changed: Notify,
    closed: AtomicBool,
}

/// What the connection task finds when it waits for changes.
pub(crate) enum Pending {
    /// Channels and whether the node now wants each.
    Changes(Vec<(Box<str>, bool)>),
    /// The broker handle was dropped.
    Closed,
}

impl InterestQueue {
    /// The node gained (`on`) or lost (`!on`) its local subscribers of `channel`.
    pub(crate) fn set(&self, channel: &str, on: bool) {
        if let Ok(mut latest) = self.latest.lock() {
            latest.insert(channel.into(), on);
        }
        self.changed.notify_one();
    }

    /// No more changes will come: the broker handle is gone.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// Takes the changes, if any, without waiting.
    pub(crate) fn take(&self) -> Vec<(Box<str>, bool)> {
        self.latest
            .lock()
            .map(|mut latest| latest.drain().collect())
            .unwrap_or_default()
    }

    /// Waits for changes (or the end).
    pub(crate) async fn next(&self) -> Pending {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Pending::Closed;
            }
            let changes = self.take();
            if !changes.is_empty() {
                return Pending::Changes(changes);
            }
            self.changed.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_latest_state_per_channel() {
        let queue = InterestQueue::default();
        for _ in 0..1_000 {
            queue.set("flap", true);
            queue.set("flap", false);
        }
        queue.set("news", true);
        let Pending::Changes(mut changes) = queue.next().await else {
            panic!("closed")
        };
        changes.sort();
        assert_eq!(changes, vec![("flap".into(), false), ("news".into(), true)]);
        queue.close();
        assert!(matches!(queue.next().await, Pending::Closed));
    }
}
