//! The per-tick arrival spread of the `tick` scenario: when each tick (sequence number)
//! first and last reached a worker's connections, and how those of several workers merge.

use serde::{Deserialize, Serialize};

/// Ticks tracked at most (one per second of `tick`: more than a day).
pub const MAX_TICKS: usize = 100_000;

/// When one tick (sequence number) reached this worker's connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickArrival {
    /// Publisher's timestamp (Unix ns), 0 if the body had none.
    pub stamp_ns: u64,
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
        if self.stamp_ns == 0 {
            self.stamp_ns = other.stamp_ns;
        }
    }
}

/// Arrival spread per tick, indexed by sequence number (serialized as the plain list).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ticks {
    arrivals: Vec<TickArrival>,
}

impl Ticks {
    /// Records that tick `seq`, sent at `stamp_ns`, arrived at `now_ns`.
    pub fn record(&mut self, seq: u64, stamp_ns: Option<u64>, now_ns: u64) {
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
            stamp_ns: stamp_ns.unwrap_or(0),
            first_ns: now_ns,
            last_ns: now_ns,
            count: 1,
        });
    }

    /// The arrivals so far.
    pub fn arrivals(&self) -> &[TickArrival] {
        &self.arrivals
    }

    /// Merges another worker's arrivals by sequence number.
    pub fn merge(&mut self, other: &Self) {
        if self.arrivals.len() < other.arrivals.len() {
            self.arrivals
                .resize(other.arrivals.len(), TickArrival::default());
        }
        for (a, b) in self.arrivals.iter_mut().zip(&other.arrivals) {
            a.merge(b);
        }
    }
}

impl From<Vec<TickArrival>> for Ticks {
    fn from(arrivals: Vec<TickArrival>) -> Self {
        Self { arrivals }
    }
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
                stamp_ns: 100,
                first_ns: 130,
                last_ns: 190,
                count: 3
            }
        );
    }

    #[test]
    fn merges_workers() {
        let mut a = Ticks::from(vec![TickArrival {
            stamp_ns: 5,
            first_ns: 10,
            last_ns: 20,
            count: 2,
        }]);
        let b = Ticks::from(vec![
            TickArrival {
                stamp_ns: 5,
                first_ns: 8,
                last_ns: 15,
                count: 1,
            },
            TickArrival {
                stamp_ns: 6,
                first_ns: 30,
                last_ns: 31,
                count: 2,
            },
        ]);
        a.merge(&b);
        let a = a.arrivals();
        assert_eq!(a[0].first_ns, 8);
        assert_eq!(a[0].last_ns, 20);
        assert_eq!(a[0].count, 3);
        assert_eq!(a[1].count, 2);
    }
}
