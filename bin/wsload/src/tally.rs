//! Everything one worker measures while it runs: the counters, the latency histograms, the
//! first/last message times, the per-tick arrival spread (tick scenario) and the live gauges
//! the engine needs (connections awaiting their expected messages, connects in flight).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::latency::Latency;
use crate::stats::Counters;

/// Ticks tracked at most (one per second of `tick`: more than a day).
pub const MAX_TICKS: usize = 100_000;

/// When one tick (sequence number) reached this worker's connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickArrival {
    /// Publisher's timestamp (Unix ns), 0 if the body had none.
    pub sent_ns: u64,
    /// First arrival (Unix ns).
    pub first_ns: u64,
    /// Last arrival (Unix ns).
    pub last_ns: u64,
    /// Connections that received it.
    pub count: u64,
}

impl TickArrival {
    /// Adds another worker's arrivals of the same tick.
    pub fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.first_ns = self.first_ns.min(other.first_ns);
        self.last_ns = self.last_ns.max(other.last_ns);
        self.count += other.count;
        if self.sent_ns == 0 {
            self.sent_ns = other.sent_ns;
        }
    }
}

/// Arrival spread per tick, indexed by sequence number.
#[derive(Debug, Clone, Default)]
pub struct Ticks {
    arrivals: Vec<TickArrival>,
}

impl Ticks {
    /// Records that tick `seq`, sent at `sent_ns`, arrived at `now_ns`.
    pub fn record(&mut self, seq: u64, sent_ns: Option<u64>, now_ns: u64) {
        let Ok(seq) = usize::try_from(seq) else {
            return;
        };
        if seq >= MAX_TICKS {
            return;
        }
        if self.arrivals.len() <= seq {
            self.arrivals.resize(seq + 1, TickArrival::default());
        }
        self.arrivals[seq].merge(&TickArrival {
            sent_ns: sent_ns.unwrap_or(0),
            first_ns: now_ns,
            last_ns: now_ns,
            count: 1,
        });
    }

    /// The arrivals so far.
    pub fn arrivals(&self) -> &[TickArrival] {
        &self.arrivals
    }
}

/// Merges per-worker tick arrivals by sequence number.
pub fn merge_ticks(into: &mut Vec<TickArrival>, other: &[TickArrival]) {
    if into.len() < other.len() {
        into.resize(other.len(), TickArrival::default());
    }
    for (a, b) in into.iter_mut().zip(other) {
        a.merge(b);
    }
}

/// One worker's measurements.
#[derive(Debug, Default)]
pub struct Tally {
    /// Counters reported and exported.
    pub counters: Counters,
    /// Publish→receive latency or echo round trip.
    pub latency: Latency,
    /// Connect + handshake time of first connects.
    pub connect_latency: Latency,
    /// Connect + handshake time of reopened connections (churn).
    pub reconnect_latency: Latency,
    /// Tick arrival spread.
    pub ticks: Ticks,
    /// First data message.
    pub first_message: Option<Instant>,
    /// Last data message.
    pub last_message: Option<Instant>,
    /// Open connections still waiting for `--expect-messages`.
    pub awaiting: u64,
    /// Connects and handshakes in progress.
    pub in_flight: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_track_first_last_and_count() {
        let mut t = Ticks::default();
        t.record(1, Some(100), 150);
        t.record(1, Some(100), 130);
        t.record(1, Some(100), 190);
        t.record(MAX_TICKS as u64, None, 1);
        assert_eq!(t.arrivals().len(), 2);
        assert_eq!(t.arrivals()[0].count, 0);
        assert_eq!(
            t.arrivals()[1],
            TickArrival {
                sent_ns: 100,
                first_ns: 130,
                last_ns: 190,
                count: 3
            }
        );
    }

    #[test]
    fn merges_workers() {
        let mut a = vec![TickArrival {
            sent_ns: 5,
            first_ns: 10,
            last_ns: 20,
            count: 2,
        }];
        let b = [
            TickArrival {
                sent_ns: 5,
                first_ns: 8,
                last_ns: 15,
                count: 1,
            },
            TickArrival {
                sent_ns: 6,
                first_ns: 30,
                last_ns: 31,
                count: 2,
            },
        ];
        merge_ticks(&mut a, &b);
        assert_eq!(a[0].first_ns, 8);
        assert_eq!(a[0].last_ns, 20);
        assert_eq!(a[0].count, 3);
        assert_eq!(a[1].count, 2);
    }
}
