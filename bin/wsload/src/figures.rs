//! Everything a worker measures, in one type: the engine counts into it while it runs, the
//! worker sends it to the coordinator as its final report, and the coordinator merges the
//! workers' figures into the one the [`Report`](crate::report::Report) is derived from.
//! Times ending in `_at_s` are seconds since the run started (shared by all workers).

use serde::{Deserialize, Serialize};

use crate::latency::Latency;
use crate::self_usage::Usage;
use crate::stats::Counters;
use crate::ticks::Ticks;

/// One worker's figures, or the merge over workers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Figures {
    /// Plain counts (summed over workers).
    pub(crate) counters: Counters,
    /// Publish→receive latency or echo round trip.
    pub(crate) latency: Latency,
    /// Connect + handshake time of first connects.
    pub(crate) connect_latency: Latency,
    /// Connect + handshake time of reopened connections (churn).
    pub(crate) reconnect_latency: Latency,
    /// `--resume`: from a lost connection to having everything it missed again.
    #[serde(default)]
    pub(crate) recovery_latency: Latency,
    /// Tick arrivals by sequence number (tick scenario).
    pub(crate) ticks: Ticks,
    /// First data message (earliest over workers).
    pub(crate) first_message_at_s: Option<f64>,
    /// Last data message (latest over workers).
    pub(crate) last_message_at_s: Option<f64>,
    /// Seconds from the first connect to the ramp's end (longest worker).
    pub(crate) ramp_seconds: f64,
    /// Seconds of the measured phase (longest worker).
    pub(crate) hold_seconds: f64,
    /// Seconds from the run start to the worker's end (longest worker).
    pub(crate) elapsed_s: f64,
    /// Open connections per channel number when the measured phase ended (summed).
    pub(crate) channel_subscribers: Vec<u64>,
    /// wsload's own CPU and memory, one entry per worker.
    pub(crate) usage: Vec<Usage>,
}

impl Figures {
    /// Counts one data message of `bytes` payload bytes received `at_s` into the run.
    pub(crate) fn add_message(&mut self, bytes: usize, at_s: f64) {
        self.counters.messages += 1;
        self.counters.bytes += bytes as u64;
        self.first_message_at_s.get_or_insert(at_s);
        self.last_message_at_s = Some(at_s);
    }

    /// Adds another worker's figures: counts, histograms, ticks and subscribers add up,
    /// times take the earliest first and the latest last, phases the longest.
    pub(crate) fn merge(&mut self, other: &Self) {
        self.counters.add(&other.counters);
        self.latency.merge(&other.latency);
        self.connect_latency.merge(&other.connect_latency);
        self.reconnect_latency.merge(&other.reconnect_latency);
        self.recovery_latency.merge(&other.recovery_latency);
        self.ticks.merge(&other.ticks);
        self.first_message_at_s = earliest(self.first_message_at_s, other.first_message_at_s);
        self.last_message_at_s = latest(self.last_message_at_s, other.last_message_at_s);
        self.ramp_seconds = self.ramp_seconds.max(other.ramp_seconds);
        self.hold_seconds = self.hold_seconds.max(other.hold_seconds);
        self.elapsed_s = self.elapsed_s.max(other.elapsed_s);
        if self.channel_subscribers.len() < other.channel_subscribers.len() {
            self.channel_subscribers
                .resize(other.channel_subscribers.len(), 0);
        }
        for (a, b) in self
            .channel_subscribers
            .iter_mut()
            .zip(&other.channel_subscribers)
        {
            *a += b;
        }
        self.usage.extend_from_slice(&other.usage);
    }

    /// The merge of several workers' figures.
    pub(crate) fn merged<'a>(workers: impl IntoIterator<Item = &'a Self>) -> Self {
        let mut total = Self::default();
        for worker in workers {
            total.merge(worker);
        }
        total
    }
}

fn earliest(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn latest(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticks::TickArrival;

    fn worker(messages: u64, first: f64, last: f64, subscribers: Vec<u64>) -> Figures {
        let mut f = Figures::default();
        for i in 0..messages {
            let at = first + (last - first) * i as f64 / (messages - 1).max(1) as f64;
            f.add_message(10, at);
            f.latency.record_ns(1_000_000);
        }
        f.ramp_seconds = last;
        f.channel_subscribers = subscribers;
        f.ticks.record(0, Some(1), first as u64 + 5);
        f.usage.push(Usage::default());
        f
    }

    #[test]
    fn counting_a_message_tracks_first_and_last() {
        let mut f = Figures::default();
        f.add_message(3, 2.0);
        f.add_message(4, 5.0);
        assert_eq!(f.counters.messages, 2);
        assert_eq!(f.counters.bytes, 7);
        assert_eq!(f.first_message_at_s, Some(2.0));
        assert_eq!(f.last_message_at_s, Some(5.0));
    }

    #[test]
    fn merge_adds_counts_and_spans_times() {
        let a = worker(2, 1.0, 3.0, vec![1, 2]);
        let b = worker(3, 0.5, 2.0, vec![4]);
        let m = Figures::merged([&a, &b, &Figures::default()]);
        assert_eq!(m.counters.messages, 5);
        assert_eq!(m.counters.bytes, 50);
        assert_eq!(m.first_message_at_s, Some(0.5));
        assert_eq!(m.last_message_at_s, Some(3.0));
        assert_eq!(m.ramp_seconds, 3.0);
        assert_eq!(m.latency.count(), 5);
        assert_eq!(m.channel_subscribers, vec![5, 2]);
        assert_eq!(m.usage.len(), 2);
        assert_eq!(
            m.ticks.arrivals()[0],
            TickArrival {
                stamp_ns: 1,
                first_ns: 5,
                last_ns: 6,
                count: 2
            }
        );
    }

    #[test]
    fn travels_as_json() {
        let a = worker(2, 1.0, 3.0, vec![1]);
        let line = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Figures>(&line).unwrap(), a);
    }
}
