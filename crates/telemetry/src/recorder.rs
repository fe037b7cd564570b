//! The Prometheus recorder: histogram buckets, global installation, the process-metrics
//! collector, and periodic upkeep.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_process::Collector;

use crate::error::TelemetryError;
use crate::names::describe_all;

/// Upper bounds of the buckets for every `*_seconds` histogram: 100 µs to 10 s, in a
/// 1-2.5-5 exponential series.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Builds a Prometheus recorder with ringcast's histogram buckets, without installing it.
/// Useful to render metrics from a local recorder (tests, embedding).
pub fn build_recorder() -> Result<PrometheusRecorder, TelemetryError> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)?;
    Ok(builder.build_recorder())
}

/// Installs the global Prometheus recorder (buckets for the `*_seconds` histograms:
/// 0.0001..10 s exponential), describes all metrics, including the process metrics, and
/// returns the handle used to render `/metrics`. Errors if a global recorder is already
/// installed.
pub fn install_recorder() -> Result<PrometheusHandle, TelemetryError> {
    let recorder = build_recorder()?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|err| TelemetryError::Recorder(err.into()))?;
    describe_all();
    process_collector().describe();
    Ok(handle)
}

/// The process-metrics collector (`process_*`: RSS, open fds, CPU time...). Call
/// `collect()` on it before each render.
pub fn process_collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(Collector::default)
}

/// Runs the recorder's upkeep every `period`, forever, so histogram samples and idle
/// series do not pile up when nobody scrapes. Spawn it on the sidecar runtime.
pub async fn run_upkeep_every(handle: PrometheusHandle, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        handle.run_upkeep();
    }
}
