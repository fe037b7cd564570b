//! Paced publishing (`push --max-outstanding N`): the publisher keeps at most N deliveries
//! published but not yet received, as a real publisher that does not outrun its
//! subscribers. Unlike a burst (where queued frames coalesce into one send and hide every
//! per-message cost) or a fixed rate (which either leaves the server idle or overruns
//! it), this measures the server's sustained per-message throughput.
//!
//! Contract: the publisher calls [`DeliveryWindow::wait_for_room`] before each publish
//! and [`DeliveryWindow::published`] with the channel's number after each accepted
//! one; the coordinator calls [`DeliveryWindow::received`] with the workers'
//! summed message count whenever a progress snapshot arrives (every
//! [`PACED_PROGRESS_EVERY`] in a paced run, so the window is at most that stale).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Progress snapshot period of the workers in a paced run.
pub const PACED_PROGRESS_EVERY: Duration = Duration::from_millis(5);
/// How long the publisher sleeps while the window is full.
const FULL_WINDOW_NAP: Duration = Duration::from_micros(200);

/// Deliveries published (times their subscriber counts) against deliveries received.
#[derive(Debug)]
pub struct DeliveryWindow {
    limit: u64,
    /// Subscribers by channel number.
    subscribers: Vec<u64>,
    expected: AtomicU64,
    received: AtomicU64,
}

impl DeliveryWindow {
    /// A window of at most `limit` outstanding deliveries (at least 1) over channels
    /// with `subscribers` subscribers each, by channel number.
    pub fn new(limit: u64, subscribers: Vec<u64>) -> Self {
        DeliveryWindow {
            limit: limit.max(1),
            subscribers,
            expected: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// Deliveries published and not yet received.
    pub fn outstanding(&self) -> u64 {
        self.expected
            .load(Ordering::Relaxed)
            .saturating_sub(self.received.load(Ordering::Relaxed))
    }

    /// Waits until fewer than the limit are outstanding; `false` if `stop` was set or
    /// `end` passed first.
    pub fn wait_for_room(&self, stop: &AtomicBool, end: Instant) -> bool {
        loop {
            if stop.load(Ordering::Relaxed) || Instant::now() >= end {
                return false;
            }
            if self.outstanding() < self.limit {
                return true;
            }
            std::thread::sleep(FULL_WINDOW_NAP);
        }
    }

    /// One publish to channel number `channel` accepted by the server.
    pub fn published(&self, channel: usize) {
        let subscribers = self.subscribers.get(channel).copied().unwrap_or(0);
        self.expected.fetch_add(subscribers, Ordering::Relaxed);
    }

    /// The workers' total received messages so far.
    pub fn received(&self, total: u64) {
        self.received.fetch_max(total, Ordering::Relaxed);
    }
}

/// Subscribers of each of `channels` channels when connection `i` of `connections`
/// subscribes channel `i % channels`.
pub fn subscribers_per_channel(connections: usize, channels: usize) -> Vec<u64> {
    let channels = channels.max(1);
    (0..channels)
        .map(|c| (connections / channels + usize::from(c < connections % channels)) as u64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_opens_as_deliveries_arrive() {
        let window = DeliveryWindow::new(10, vec![10, 3]);
        let stop = AtomicBool::new(false);
        let end = Instant::now() + Duration::from_secs(5);
        assert!(window.wait_for_room(&stop, end));
        window.published(0);
        assert_eq!(window.outstanding(), 10);
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(!window.wait_for_room(&stop, soon), "full window must wait");
        window.received(1);
        assert!(window.wait_for_room(&stop, end));
        window.received(0);
        assert_eq!(
            window.outstanding(),
            9,
            "a stale snapshot never moves it back"
        );
        stop.store(true, Ordering::Relaxed);
        assert!(!window.wait_for_room(&stop, end));
    }

    #[test]
    fn subscribers_split_like_the_connection_plan() {
        assert_eq!(subscribers_per_channel(10, 3), vec![4, 3, 3]);
        assert_eq!(subscribers_per_channel(10_000, 1), vec![10_000]);
        assert_eq!(subscribers_per_channel(2, 0), vec![2]);
    }
}
