//! The admin router: the routes, the state they share, and the health, readiness,
//! metrics and fallback handlers (the publish handlers are in `publish`, the disconnect
//! handler in `disconnect`, the occupancy reads in `channels`, the guard on writes in `access`, the listener in `server`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use ringcast_broker::Broker;
use ringcast_telemetry::process_collector;

use crate::access::{AdminAccess, guard_writes};
use crate::channels::{Occupancy, channel_info, list_channels};
use crate::disconnect::{DISCONNECT_BODY_LIMIT, Disconnector, disconnect};
use crate::publish::{batch_body_limit, empty_channel, publish_batch, publish_one};
use crate::response::json_error;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Everything the admin routes need.
#[derive(Clone)]
pub struct AdminState {
    /// Where publishes go: the node's broker.
    pub broker: Arc<dyn Broker>,
    /// `true` while the gateway takes traffic; `false` once draining.
    pub ready: Arc<AtomicBool>,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// Largest accepted publish body, in bytes.
    pub max_message_bytes: usize,
    /// With a network broker (Redis): `true` while it is reachable. While it is not,
    /// `/readyz` still answers 200 (local clients are served) but says `degraded`.
    pub broker_up: Option<Arc<AtomicBool>>,
    /// Who may use the write (publish, disconnect) routes.
    pub access: AdminAccess,
    /// Closes this node's connections for `POST /disconnect` (the broker tells the
    /// other nodes).
    pub disconnector: Arc<dyn Disconnector>,
    /// Subscriber counts for `GET /channels` and `GET /channels/{channel}`.
    pub occupancy: Arc<dyn Occupancy>,
}

/// Builds the admin routes:
/// - `POST /publish/{channel}`: raw body; larger than `max_message_bytes` → 413 (the body
///   is never buffered past the limit), invalid or empty channel → 400, broker
///   unavailable → 503, delivered on this node but not through the broker → 503 with
///   `{"error":..,"local_delivery":true,"remote_delivery":false}`, else 202 with
///   `{"channel":..,"bytes":N,"binary":bool}` and `ringcast_messages_published_total`
///   incremented.
/// - `POST /publish`: a batch (JSON array or NDJSON of `{"channel","data"}` or
///   `{"channel","base64"}`), published in order; 200 with `{"published","failed",
///   "results":[{"channel","ok":true,"bytes"} | {"channel","error"}]}`, 400 when the body
///   is not a batch at all.
/// - `POST /disconnect`: `{"sub":".."}` or `{"channel":".."}` closes the connections of
///   that token `sub` or the subscribers of that channel on this node and, through the
///   broker, on every other node; 200 `{"disconnected":N}` counting this node's (plus
///   `"complete":false` when a shard did not answer in time), 503 with
///   `"cluster":false` when the broker could not tell the other nodes, 400 (counted as
///   `bad_disconnect`) for any other body.
/// - `GET /channels?prefix=P&limit=N`: channels with subscribers on this node, sorted by
///   name, with counts; `GET /channels/{channel}`: one channel's node (and cluster)
///   count and last position (see `channels`). Guarded like the writes.
/// - `GET /healthz` → 200 `ok`.
/// - `GET /readyz` → 200 `ready` or 503 `draining`, from `ready`; 200 with a body starting
///   `degraded` while `broker_up` says the broker is unreachable.
/// - `GET /metrics` → Prometheus text, process metrics collected first.
/// - anything else → 404, or 405 for a known path with the wrong method.
///
/// Every request with an unsafe method (anything but GET, HEAD, OPTIONS, TRACE: the
/// publish and disconnect routes, and any write route added later, without opting in)
/// first passes
/// [`AdminAccess`]: an `Origin` not allowed → 403, a `Host` that is no IP literal,
/// `localhost` or allowed name → 403, without the bearer token (when one is set) → 401
/// with `WWW-Authenticate: Bearer`. A body that stalls past the idle timeout → 408.
///
/// Errors are JSON `{"error": "..."}`.
pub fn admin_router(state: AdminState) -> Router {
    let body_limit = DefaultBodyLimit::max(state.max_message_bytes);
    let batch_limit = DefaultBodyLimit::max(batch_body_limit(state.max_message_bytes));
    Router::new()
        .route("/publish/{channel}", post(publish_one).layer(body_limit))
        .route("/publish", post(publish_batch).layer(batch_limit))
        .route("/publish/", post(empty_channel))
        .route(
            "/disconnect",
            post(disconnect).layer(DefaultBodyLimit::max(DISCONNECT_BODY_LIMIT)),
        )
        .route("/channels", get(list_channels))
        .route("/channels/{channel}", get(channel_info))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), guard_writes))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let broker_down = state
        .broker_up
        .as_ref()
        .is_some_and(|up| !up.load(Ordering::Acquire));
    if state.ready.load(Ordering::Acquire) {
        let body = if broker_down {
            "degraded: broker unreachable; local clients are served, publishes reach this node only"
        } else {
            "ready"
        };
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    }
}

async fn render_metrics(State(state): State<AdminState>) -> Response {
    process_collector().collect();
    let text = state.prometheus.render();
    ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response()
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not found")
}

async fn method_not_allowed() -> Response {
    json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}
