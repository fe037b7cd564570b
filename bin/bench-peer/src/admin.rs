//! Admin HTTP (axum): `POST /publish/{channel}` with the raw body (sent as a text frame when it
//! is UTF-8, binary otherwise) answers 202 (in `--floor` mode after the send loop, see
//! [`crate::floor`]); `GET /metrics` is a minimal Prometheus text page.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::registry::Registry;

/// The admin routes.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/publish/{channel}", post(publish))
        .route("/metrics", get(metrics))
        .with_state(registry)
}

async fn publish(
    State(registry): State<Arc<Registry>>,
    Path(channel): Path<String>,
    body: Bytes,
) -> StatusCode {
    if let Some(floor) = &registry.floor {
        let text = std::str::from_utf8(&body).is_ok();
        floor.publish(&channel, body, text);
        return StatusCode::ACCEPTED;
    }
    let message = match Utf8Bytes::try_from(body.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(body),
    };
    registry.publish(&channel, message);
    StatusCode::ACCEPTED
}

async fn metrics(State(registry): State<Arc<Registry>>) -> String {
    let (delivered, dropped) = match &registry.floor {
        Some(floor) => (
            floor.sent.load(Ordering::Relaxed),
            floor.dropped.load(Ordering::Relaxed),
        ),
        None => (registry.delivered.load(Ordering::Relaxed), 0),
    };
    format!(
        "# TYPE benchpeer_connections gauge\nbenchpeer_connections {}\n\
         # TYPE benchpeer_messages_delivered_total counter\nbenchpeer_messages_delivered_total {delivered}\n\
         # TYPE benchpeer_messages_dropped_total counter\nbenchpeer_messages_dropped_total {dropped}\n",
        registry.connections.load(Ordering::Relaxed),
    )
}
