//! Telemetry for the ringcast gateway: metric names and help text, per-shard counters
//! flushed into the `metrics` facade, and the Prometheus recorder (the admin HTTP API that
//! serves `/metrics` is `ringcast-admin`).

#![warn(unreachable_pub)]

pub mod error;
pub mod names;
pub mod queue_full;
pub mod recorder;
pub mod shard_counters;

pub use error::TelemetryError;
pub use queue_full::QueueName;
pub use recorder::{build_recorder, install_recorder, process_collector, run_upkeep_every};
pub use shard_counters::ShardCounters;
