//! The publish routes: `POST /publish/{channel}` (raw body) and `POST /publish` (a batch).
//! Every message is checked once ([`Message::check`]) and handed straight to the broker.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ringcast_telemetry::names;

use crate::batch::parse_batch;
use crate::error::PublishError;
use crate::message::Message;
use crate::response::{json_error, json_response};
use crate::routes::AdminState;
use crate::stalled_body::BodyStalled;

/// Largest batch body: 16 messages of the largest size, and at least 1 MiB.
pub(crate) fn batch_body_limit(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_mul(16).max(1 << 20)
}

/// Exports `ringcast_messages_published_total` at 0 before the first publish.
pub(crate) fn register_published() {
    metrics::counter!(names::MESSAGES_PUBLISHED).increment(0);
}

/// Checks `message`, publishes it through the broker (waiting for its backend to confirm)
/// and counts it in `ringcast_messages_published_total`.
async fn publish(state: &AdminState, message: &Message) -> Result<(), PublishError> {
    message.check(state.max_message_bytes)?;
    state
        .broker
        .publish_async(&message.channel, message.payload.clone(), message.binary)
        .await?;
    metrics::counter!(names::MESSAGES_PUBLISHED).increment(1);
    Ok(())
}

/// `POST /publish/{channel}`: 202 `{"channel","bytes","binary"}`, or the refusal.
pub(crate) async fn publish_one(
    State(state): State<AdminState>,
    channel: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path(channel)) = channel else {
        return PublishError::BadChannel.into_response();
    };
    let payload = match body {
        Ok(payload) => payload,
        Err(rejection) => return body_refused(&rejection),
    };
    // A body can be a slice of the connection's read buffer (several pipelined requests
    // at once); a queued message must hold only its own bytes, not that whole buffer.
    let message = Message::new(channel, Bytes::copy_from_slice(&payload));
    match publish(&state, &message).await {
        Ok(()) => {
            let body = serde_json::json!({
                "channel": message.channel,
                "bytes": message.payload.len(),
                "binary": message.binary,
            });
            json_response(StatusCode::ACCEPTED, &body)
        }
        Err(err) => err.into_response(),
    }
}

/// The answer to a body that could not be read: 413 past the size limit, 408 when it
/// stalled past the idle timeout, else the rejection's own status.
pub(crate) fn body_refused(rejection: &BytesRejection) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return PublishError::TooLarge.into_response();
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(err) = cause {
        if let Some(stalled) = err.downcast_ref::<BodyStalled>() {
            return json_error(StatusCode::REQUEST_TIMEOUT, &stalled.to_string());
        }
        cause = err.source();
    }
    json_error(rejection.status(), &rejection.body_text())
}

/// `POST /publish/` (no channel): 400.
pub(crate) async fn empty_channel() -> Response {
    json_error(StatusCode::BAD_REQUEST, "empty channel name")
}

/// `POST /publish`: publishes the batch's messages in order; 200 with one result per item,
/// or 400 when the body is not a batch at all.
pub(crate) async fn publish_batch(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_refused(&rejection),
    };
    let items = match parse_batch(&body) {
        Ok(items) => items,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let mut results = Vec::with_capacity(items.len());
    let mut published = 0;
    for item in items {
        let result = match item {
            Err(reason) => serde_json::json!({ "error": reason }),
            Ok(message) => match publish(&state, &message).await {
                Ok(()) => {
                    published += 1;
                    serde_json::json!({
                        "channel": message.channel,
                        "ok": true,
                        "bytes": message.payload.len(),
                    })
                }
                Err(err) => {
                    serde_json::json!({ "channel": message.channel, "error": err.to_string() })
                }
            },
        };
        results.push(result);
    }
    let failed = results.len() - published;
    let body = serde_json::json!({ "published": published, "failed": failed, "results": results });
    json_response(StatusCode::OK, &body)
}
