//! Deadlines of connections in FIFO queues: every deadline of one queue is the same delay
//! after its start (connect timeout, close grace, echo period), so they expire in the order
//! they were pushed and no connection needs a kernel timer of its own. A deadline names its
//! slot by generation, so one of a slot since reused is recognised as stale.

use std::collections::VecDeque;
use std::time::Instant;

use super::SlotRef;

/// A deadline of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    /// When it expires.
    pub(crate) at: Instant,
    /// The connection it is for.
    pub(crate) slot: SlotRef,
}

/// Deadlines in the order they expire.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    queue: VecDeque<Deadline>,
}

impl Deadlines {
    /// Adds a deadline no earlier than the last one pushed.
    pub(crate) fn push(&mut self, at: Instant, slot: SlotRef) {
        self.queue.push_back(Deadline { at, slot });
    }

    /// Adds deadlines in any order (sorted first).
    pub(crate) fn extend_unsorted(&mut self, mut deadlines: Vec<Deadline>) {
        deadlines.sort_by_key(|d| d.at);
        self.queue.extend(deadlines);
    }

    /// Removes and returns the first deadline if it has expired at `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Deadline> {
        if self.queue.front()?.at > now {
            return None;
        }
        self.queue.pop_front()
    }

    /// When the first deadline expires.
    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.queue.front().map(|d| d.at)
    }

    /// Drops every deadline.
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expire_in_order() {
        let t0 = Instant::now();
        let slot = |id| SlotRef { id, r#gen: 1 };
        let mut d = Deadlines::default();
        d.extend_unsorted(vec![
            Deadline {
                at: t0 + Duration::from_millis(20),
                slot: slot(2),
            },
            Deadline {
                at: t0 + Duration::from_millis(10),
                slot: slot(1),
            },
        ]);
        d.push(t0 + Duration::from_millis(30), slot(3));
        assert_eq!(d.next_at(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(d.pop_expired(t0), None);
        let now = t0 + Duration::from_millis(25);
        assert_eq!(d.pop_expired(now).map(|d| d.slot.id), Some(1));
        assert_eq!(d.pop_expired(now).map(|d| d.slot.id), Some(2));
        assert_eq!(d.pop_expired(now), None);
        d.clear();
        assert_eq!(d.next_at(), None);
    }
}
