//! Latency recording: an HDR histogram in microseconds (3 significant digits, up to one
//! hour), its wire form for merging worker histograms (also how it serializes), its
//! percentile summary for the report, and its cumulative buckets for the Prometheus
//! histogram.

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest recordable value: one hour in microseconds (larger values are clamped).
const MAX_MICROS: u64 = 3_600_000_000;
/// Significant decimal digits kept.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Upper bounds (seconds) of the `wsload_latency_seconds` Prometheus buckets.
pub const BUCKET_BOUNDS_S: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram plus the exact sum of what it recorded. Serializes as its
/// [`LatencyWire`] form.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    histogram: Histogram<u64>,
    sum_micros: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS)
            .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"));
        Self {
            histogram,
            sum_micros: 0,
        }
    }

    /// Records one value in nanoseconds (clamped to 1 µs .. 1 h).
    pub fn record_ns(&mut self, nanos: u64) {
        let micros = (nanos / 1_000).clamp(1, MAX_MICROS);
        self.histogram.saturating_record(micros);
        self.sum_micros += micros;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The wire form (non-empty buckets only).
    pub fn to_wire(&self) -> LatencyWire {
        LatencyWire {
            sum_micros: self.sum_micros,
            buckets: self
                .histogram
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        }
    }

    /// Adds another histogram (another worker's) to this one.
    pub fn merge(&mut self, other: &Self) {
        self.histogram
            .add(&other.histogram)
            .unwrap_or_else(|_| unreachable!("histograms of the same constant bounds always add"));
        self.sum_micros += other.sum_micros;
    }

    /// Adds a wire-form histogram (another worker's) to this one.
    pub fn add_wire(&mut self, wire: &LatencyWire) {
        for &(value, count) in &wire.buckets {
            let _ = self.histogram.record_n(value.clamp(1, MAX_MICROS), count);
        }
        self.sum_micros += wire.sum_micros;
    }

    /// Percentiles in milliseconds, or `None` when nothing was recorded.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1_000.0;
        let at = |q: f64| ms(self.histogram.value_at_quantile(q));
        Some(LatencySummary {
            count: self.count(),
            min_ms: ms(self.histogram.min()),
            mean_ms: self.sum_micros as f64 / self.count() as f64 / 1_000.0,
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms(self.histogram.max()),
        })
    }

    /// Cumulative counts at [`BUCKET_BOUNDS_S`], plus the sum in seconds and the count.
    pub fn prometheus_buckets(&self) -> PromBuckets {
        let mut cumulative = [0u64; BUCKET_BOUNDS_S.len()];
        for v in self.histogram.iter_recorded() {
            let seconds = self.histogram.highest_equivalent(v.value_iterated_to()) as f64 / 1e6;
            for (slot, bound) in cumulative.iter_mut().zip(BUCKET_BOUNDS_S) {
                if seconds <= bound {
                    *slot += v.count_at_value();
                }
            }
        }
        PromBuckets {
            cumulative: cumulative.to_vec(),
            sum_s: self.sum_micros as f64 / 1e6,
            count: self.count(),
        }
    }
}

impl Serialize for Latency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_wire().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut latency = Self::new();
        latency.add_wire(&LatencyWire::deserialize(deserializer)?);
        Ok(latency)
    }
}

/// A histogram as it travels from a worker to the parent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyWire {
    /// Exact sum of the recorded values (µs).
    pub sum_micros: u64,
    /// `(value µs, count)` of every non-empty bucket.
    pub buckets: Vec<(u64, u64)>,
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Smallest.
    pub min_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Prometheus histogram state: cumulative bucket counts at [`BUCKET_BOUNDS_S`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromBuckets {
    /// Cumulative count per bound.
    pub cumulative: Vec<u64>,
    /// Sum of the values in seconds.
    pub sum_s: f64,
    /// Values recorded (the `+Inf` bucket).
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut latency = Latency::new();
        for ms in 1..=1000u64 {
            latency.record_ns(ms * 1_000_000);
        }
        let s = latency.summary().unwrap();
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() < 1.0, "{s:?}");
        assert!((s.mean_ms - 500.5).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn empty_has_no_summary_and_clamps_extremes() {
        let mut latency = Latency::new();
        assert!(latency.summary().is_none());
        latency.record_ns(0);
        latency.record_ns(u64::MAX);
        let s = latency.summary().unwrap();
        assert_eq!(s.count, 2);
        assert_eq!(s.min_ms, 0.001);
        assert!(s.max_ms >= 3_599_000.0);
    }

    #[test]
    fn wire_round_trip_merges() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        a.record_ns(2_000_000);
        b.record_ns(4_000_000);
        b.record_ns(4_000_000);
        let wire: LatencyWire =
            serde_json::from_str(&serde_json::to_string(&b.to_wire()).unwrap()).unwrap();
        let mut c = a.clone();
        a.add_wire(&wire);
        let s = a.summary().unwrap();
        assert_eq!(s.count, 3);
        assert!((s.max_ms - 4.0).abs() < 0.01);
        assert!((s.mean_ms - 10.0 / 3.0).abs() < 0.01);
        let back: Latency = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(back, b);
        c.merge(&b);
        assert_eq!(c, a);
    }

    #[test]
    fn prometheus_buckets_are_cumulative() {
        let mut latency = Latency::new();
        latency.record_ns(200_000); // 0.2 ms
        latency.record_ns(3_000_000); // 3 ms
        latency.record_ns(20_000_000_000); // 20 s, beyond the last bound
        let b = latency.prometheus_buckets();
        assert_eq!(b.count, 3);
        assert_eq!(b.cumulative[0], 0); // <= 0.1 ms
        assert_eq!(b.cumulative[1], 1); // <= 0.25 ms
        assert_eq!(b.cumulative[4], 1); // <= 2.5 ms
        assert_eq!(b.cumulative[5], 2); // <= 5 ms
        assert_eq!(*b.cumulative.last().unwrap(), 2);
        assert!((b.sum_s - 20.0032).abs() < 1e-6);
    }
}
