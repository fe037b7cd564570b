//! The webhook's bounded event queue and batching, without I/O or clock: events in,
//! batches out when one is due (the oldest waited [`BATCH_WAIT_MS`], or
//! [`BATCH_MAX`] are waiting), events past the capacity refused (the caller counts
//! them as dropped), and the retry delays of a batch.

use std::collections::VecDeque;

/// Longest an event waits for companions before its batch is sent.
pub const BATCH_WAIT_MS: u64 = 100;
/// Most events in one POST.
pub const BATCH_MAX: usize = 100;
/// Events the queue holds; more are dropped while the receiver is slow or down.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Tries of one batch before its events count as failed.
pub const ATTEMPTS: u32 = 5;

/// What happened to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Its first subscriber (cluster-wide with Redis, else node-wide) arrived.
    Occupied,
    /// Its last subscriber left.
    Vacated,
}

impl EventKind {
    /// The event's name in the JSON body.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::Occupied => "channel_occupied",
            EventKind::Vacated => "channel_vacated",
        }
    }
}

/// One occupancy event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub channel: String,
    /// Unix milliseconds when this node saw it.
    pub at_ms: u64,
}

/// Events waiting to be sent, oldest first, with when each was queued.
pub struct EventQueue {
    waiting: VecDeque<(Event, u64)>,
    capacity: usize,
}

impl EventQueue {
    /// A queue holding at most `capacity` events.
    pub fn new(capacity: usize) -> Self {
        EventQueue {
            waiting: VecDeque::new(),
            capacity,
        }
    }

    /// Queues `event` at `now_ms`; false when the queue is full (the event is dropped).
    pub fn push(&mut self, event: Event, now_ms: u64) -> bool {
        if self.waiting.len() >= self.capacity {
            return false;
        }
        self.waiting.push_back((event, now_ms));
        true
    }

    /// Milliseconds from `now_ms` until a batch is due (0: now); None when empty.
    pub fn due_in(&self, now_ms: u64) -> Option<u64> {
        let (_, queued) = self.waiting.front()?;
        if self.waiting.len() >= BATCH_MAX {
            return Some(0);
        }
        Some((queued + BATCH_WAIT_MS).saturating_sub(now_ms))
    }

    /// The oldest events, at most [`BATCH_MAX`].
    pub fn take_batch(&mut self) -> Vec<Event> {
        let n = self.waiting.len().min(BATCH_MAX);
        self.waiting.drain(..n).map(|(event, _)| event).collect()
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }
}

/// Wait before try `attempt` (1-based) of a batch after a failure: 200 ms doubling.
pub fn retry_delay_ms(attempt: u32) -> u64 {
    200u64 << attempt.saturating_sub(1).min(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> Event {
        Event {
            kind: EventKind::Occupied,
            channel: format!("c{i}"),
            at_ms: 0,
        }
    }

    #[test]
    fn a_batch_is_due_after_the_wait_or_when_full() {
        let mut queue = EventQueue::new(QUEUE_CAPACITY);
        assert_eq!(queue.due_in(0), None);
        assert!(queue.push(event(0), 1000));
        assert_eq!(queue.due_in(1000), Some(BATCH_WAIT_MS));
        assert_eq!(queue.due_in(1060), Some(40));
        assert_eq!(queue.due_in(5000), Some(0));
        for i in 1..BATCH_MAX + 5 {
            queue.push(event(i), 1001);
        }
        assert_eq!(queue.due_in(1001), Some(0), "a full batch goes at once");
        let batch = queue.take_batch();
        assert_eq!(batch.len(), BATCH_MAX);
        assert_eq!(batch[0], event(0), "oldest first");
        assert_eq!(queue.len(), 5);
        assert_eq!(queue.take_batch().len(), 5);
        assert_eq!(queue.due_in(2000), None);
    }

    #[test]
    fn past_the_capacity_events_are_refused_and_memory_stays_bounded() {
        let mut queue = EventQueue::new(3);
        let accepted = (0..1000).filter(|&i| queue.push(event(i), 0)).count();
        assert_eq!(accepted, 3);
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.take_batch(), vec![event(0), event(1), event(2)]);
        assert!(queue.push(event(7), 0), "room again after a batch left");
    }

    #[test]
    fn retries_back_off() {
        let delays: Vec<u64> = (1..ATTEMPTS).map(retry_delay_ms).collect();
        assert_eq!(delays, vec![200, 400, 800, 1600]);
        assert_eq!(retry_delay_ms(1000), 200 << 10);
    }
}
