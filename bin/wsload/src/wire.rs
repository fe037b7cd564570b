//! What a worker tells the coordinator (one JSON line each on a worker process's stdout, or
//! a channel message for the in-process worker): progress snapshots, ramp and hold
//! milestones, and the worker's final [`Figures`] the coordinator merges.

use serde::{Deserialize, Serialize};

use crate::figures::Figures;
use crate::latency::PromBuckets;
use crate::stats::Counters;

/// Live state of a worker, sent a few times a second (progress line and `--metrics`): the
/// plain counts of its [`Figures`] and its latency as Prometheus buckets (the histograms
/// themselves travel only in the final report).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Counters so far.
    pub counters: Counters,
    /// `wsload_latency_seconds` buckets.
    pub latency: PromBuckets,
}

/// One event of a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// A few times a second.
    Progress(Box<Snapshot>),
    /// The worker's ramp is over.
    RampDone {
        /// Connections open after the ramp.
        connected: u64,
    },
    /// The measured phase is over; the worker is closing its connections.
    HoldDone {
        /// Messages received.
        messages: u64,
    },
    /// The worker's final figures.
    Report(Box<Figures>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_tagged_json_lines() {
        let events = [
            WorkerEvent::Progress(Box::default()),
            WorkerEvent::RampDone { connected: 7 },
            WorkerEvent::HoldDone { messages: 8 },
            WorkerEvent::Report(Box::new(Figures {
                ticks: vec![crate::ticks::TickArrival::default()].into(),
                ..Figures::default()
            })),
        ];
        for event in events {
            let line = serde_json::to_string(&event).unwrap();
            assert!(line.contains("\"event\""));
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<WorkerEvent>(&line).unwrap(), event);
        }
        assert!(serde_json::from_str::<WorkerEvent>("panicked at").is_err());
    }
}
