//! What a worker tells the coordinator (one JSON line each on a worker process's stdout, or
//! a channel message for the in-process worker): progress snapshots, ramp and hold
//! milestones, and the final per-worker report the coordinator merges.

use serde::{Deserialize, Serialize};

use crate::latency::{LatencyWire, PromBuckets};
use crate::self_usage::UsagePoint;
use crate::stats::Counters;
use crate::tally::TickArrival;

/// Live state of a worker, sent a few times a second (progress line and `--metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Counters so far.
    pub counters: Counters,
    /// `wsload_latency_seconds` buckets.
    pub latency: PromBuckets,
}

/// wsload's own cost measured by one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Before the first connect.
    pub start: UsagePoint,
    /// When half of the worker's connections were open (marginal memory per connection).
    pub mid: Option<UsagePoint>,
    /// When the ramp ended.
    pub ramp_end: UsagePoint,
    /// When the measured phase (hold, publish, echo, churn) ended.
    pub hold_end: UsagePoint,
}

/// Everything one worker measured, merged by the coordinator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Final counters.
    pub counters: Counters,
    /// Seconds from the first connect to the ramp's end.
    pub ramp_seconds: f64,
    /// Seconds of the measured phase.
    pub hold_seconds: f64,
    /// First data message, seconds since the run started.
    pub first_message_at_s: Option<f64>,
    /// Last data message, seconds since the run started.
    pub last_message_at_s: Option<f64>,
    /// Seconds from the run start to the worker's end.
    pub elapsed_s: f64,
    /// Publish→receive latency or echo round trip.
    pub latency: LatencyWire,
    /// Connect + handshake time of first connects.
    pub connect_latency: LatencyWire,
    /// Connect + handshake time of reopened connections.
    pub reconnect_latency: LatencyWire,
    /// Tick arrivals by sequence number (tick scenario).
    pub ticks: Vec<TickArrival>,
    /// Open connections per channel number when the measured phase ended.
    pub channel_subscribers: Vec<u64>,
    /// wsload's own CPU and memory.
    pub usage: Usage,
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
    /// The worker's final report.
    Report(Box<WorkerReport>),
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
            WorkerEvent::Report(Box::new(WorkerReport {
                ticks: vec![TickArrival::default()],
                ..WorkerReport::default()
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
