//! Errors raised while setting up telemetry.

use metrics_exporter_prometheus::BuildError;

/// Failure to set up the Prometheus recorder.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The recorder could not be built or installed (for example, a global recorder is
    /// already installed).
    #[error("prometheus recorder: {0}")]
    Recorder(#[from] BuildError),
}
