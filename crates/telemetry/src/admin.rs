//! The admin HTTP server run on the sidecar: publish, health, readiness and Prometheus
//! scrape routes, plus the `Publisher` seam through which publishes reach the shards.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::batch::parse_batch;
use crate::names;
use crate::recorder::process_collector;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The channel name is not valid (HTTP 400).
    #[error("invalid channel name")]
    BadChannel,
    /// The payload is larger than the gateway accepts (HTTP 413).
    #[error("message too large")]
    TooLarge,
    /// The gateway cannot take publishes right now (HTTP 503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The message reached this node's subscribers, but the broker (Redis) could not
    /// carry it to the other nodes (HTTP 503, with `"local_delivery": true`).
    #[error("delivered locally only: {0}")]
    RemoteUnavailable(String),
}

/// What happened to an accepted publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishReceipt {
    /// How many shards the message was routed to (0 is fine: nobody subscribed).
    pub shards: u32,
}

/// The outcome of a publish, once the gateway knows it.
pub type PublishOutcome =
    Pin<Box<dyn Future<Output = Result<PublishReceipt, PublishError>> + Send>>;

/// Takes publishes from the admin route into the gateway.
pub trait Publisher: Send + Sync + 'static {
    /// Publishes `payload` on `channel`. `binary` = the body is not valid UTF-8.
    fn publish(
        &self,
        channel: &str,
        payload: Bytes,
        binary: bool,
    ) -> Result<PublishReceipt, PublishError>;

    /// Like [`Publisher::publish`] for publishers that must wait for a backend (Redis)
    /// to confirm. The admin route calls this one; the default answers at once with
    /// [`Publisher::publish`]'s result.
    fn publish_async(&self, channel: &str, payload: Bytes, binary: bool) -> PublishOutcome {
        Box::pin(std::future::ready(self.publish(channel, payload, binary)))
    }
}

/// Everything the admin routes need.
#[derive(Clone)]
pub struct AdminState {
    /// Where publishes go.
    pub publisher: Arc<dyn Publisher>,
    /// `true` while the gateway takes traffic; `false` once draining.
    pub ready: Arc<AtomicBool>,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// Largest accepted publish body, in bytes.
    pub max_message_bytes: usize,
    /// With a network broker (Redis): `true` while it is reachable. While it is not,
    /// `/readyz` still answers 200 (local clients are served) but says `degraded`.
    pub broker_up: Option<Arc<AtomicBool>>,
}

/// Builds the admin routes:
/// - `POST /publish/{channel}`: raw body; larger than `max_message_bytes` → 413 (the body
///   is never buffered past the limit), invalid or empty channel → 400, unavailable → 503,
///   delivered on this node but not through the broker → 503 with
///   `{"error":..,"local_delivery":true,"remote_delivery":false}`, else 202 with `{"channel":..,"bytes":N,"binary":bool,"shards":N}` and
///   `ringcast_messages_published_total` incremented.
/// - `POST /publish`: a batch (JSON array or NDJSON of `{"channel","data"}` or
///   `{"channel","base64"}`), published in order; 200 with `{"published","failed",
///   "results":[{"channel","ok":true,"bytes"} | {"channel","error"}]}`, 400 when the body
///   is not a batch at all.
/// - `GET /healthz` → 200 `ok`.
/// - `GET /readyz` → 200 `ready` or 503 `draining`, from `ready`; 200 with a body starting
///   `degraded` while `broker_up` says the broker is unreachable.
/// - `GET /metrics` → Prometheus text, process metrics collected first.
/// - anything else → 404, or 405 for a known path with the wrong method.
///
/// Errors are JSON `{"error": "..."}`.
pub fn admin_router(state: AdminState) -> Router {
    let body_limit = DefaultBodyLimit::max(state.max_message_bytes);
    let batch_limit = DefaultBodyLimit::max(batch_body_limit(state.max_message_bytes));
    Router::new()
        .route("/publish/{channel}", post(publish).layer(body_limit))
        .route("/publish", post(publish_batch).layer(batch_limit))
        .route("/publish/", post(empty_channel))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves `router` on an already-bound listener until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn publish(
    State(state): State<AdminState>,
    channel: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path(channel)) = channel else {
        return json_error(StatusCode::BAD_REQUEST, "invalid channel name");
    };
    if channel.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "empty channel name");
    }
    let payload = match body {
        Ok(payload) => payload,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return publish_error(&PublishError::TooLarge);
        }
        Err(rejection) => return json_error(rejection.status(), &rejection.body_text()),
    };
    if payload.len() > state.max_message_bytes {
        return publish_error(&PublishError::TooLarge);
    }
    let bytes = payload.len();
    let binary = std::str::from_utf8(&payload).is_err();
    match state
        .publisher
        .publish_async(&channel, payload, binary)
        .await
    {
        Ok(receipt) => {
            metrics::counter!(names::MESSAGES_PUBLISHED).increment(1);
            let body = serde_json::json!({
                "channel": channel,
                "bytes": bytes,
                "binary": binary,
                "shards": receipt.shards,
            });
            json_response(StatusCode::ACCEPTED, &body)
        }
        Err(err) => publish_error(&err),
    }
}

/// Largest batch body: 16 messages of the largest size, and at least 1 MiB.
fn batch_body_limit(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_mul(16).max(1 << 20)
}

async fn publish_batch(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return json_error(rejection.status(), &rejection.body_text()),
    };
    let items = match parse_batch(&body) {
        Ok(items) => items,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let mut results = Vec::with_capacity(items.len());
    let mut published = 0;
    for item in items {
        let result = match item {
            Err(message) => serde_json::json!({ "error": message }),
            Ok((channel, payload, _)) if payload.len() > state.max_message_bytes => {
                serde_json::json!({ "channel": channel, "error": PublishError::TooLarge.to_string() })
            }
            Ok((channel, payload, binary)) => {
                let bytes = payload.len();
                match state
                    .publisher
                    .publish_async(&channel, payload, binary)
                    .await
                {
                    Ok(_) => {
                        published += 1;
                        metrics::counter!(names::MESSAGES_PUBLISHED).increment(1);
                        serde_json::json!({ "channel": channel, "ok": true, "bytes": bytes })
                    }
                    Err(err) => serde_json::json!({ "channel": channel, "error": err.to_string() }),
                }
            }
        };
        results.push(result);
    }
    let failed = results.len() - published;
    let body = serde_json::json!({ "published": published, "failed": failed, "results": results });
    json_response(StatusCode::OK, &body)
}

async fn empty_channel() -> Response {
    json_error(StatusCode::BAD_REQUEST, "empty channel name")
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

fn publish_error(err: &PublishError) -> Response {
    let status = match err {
        PublishError::BadChannel => StatusCode::BAD_REQUEST,
        PublishError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        PublishError::Unavailable(_) | PublishError::RemoteUnavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    if let PublishError::RemoteUnavailable(_) = err {
        let body = serde_json::json!({
            "error": err.to_string(),
            "local_delivery": true,
            "remote_delivery": false,
        });
        return json_response(status, &body);
    }
    json_error(status, &err.to_string())
}

fn json_error(status: StatusCode, message: &str) -> Response {
    json_response(status, &serde_json::json!({ "error": message }))
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
