//! Telemetry for the ringcast gateway: metric names and help text, per-shard counters
//! flushed into the `metrics` facade, the Prometheus recorder, and the admin HTTP routes
//! served on the sidecar tokio thread.

pub mod admin;
pub mod batch;
pub mod error;
pub mod names;
pub mod recorder;
pub mod shard_counters;

pub use admin::{
    AdminState, PublishError, PublishOutcome, PublishReceipt, Publisher, admin_router, serve_admin,
};
pub use error::TelemetryError;
pub use recorder::{build_recorder, install_recorder, process_collector, run_upkeep_every};
pub use shard_counters::ShardCounters;
