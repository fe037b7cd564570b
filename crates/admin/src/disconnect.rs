//! `POST /disconnect`: closes the connections of one user (`{"sub":"user42"}`, every
//! connection admitted with a token naming that `sub`) or of one channel
//! (`{"channel":"news"}`, every subscriber), on this node through the [`Disconnector`]
//! the binary provides and on every other node through the broker
//! ([`Broker::disconnect_cluster`]). The answer counts what this node closed.
//!
//! The route is a write, so it passes the same guards as the publish routes (bearer
//! token, Origin, Host) before it is reached.
//!
//! [`Broker::disconnect_cluster`]: ringcast_broker::Broker::disconnect_cluster

use std::future::Future;
use std::pin::Pin;

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use ringcast_broker::{DisconnectTarget, MAX_SUB_BYTES};
use ringcast_proto::is_valid_channel;

use crate::publish::body_refused;
use crate::refusal::Refusal;
use crate::response::{json_error, json_response};
use crate::routes::AdminState;

/// Largest `POST /disconnect` body, in bytes (a `sub` of [`MAX_SUB_BYTES`] fits even
/// with every byte escaped).
pub(crate) const DISCONNECT_BODY_LIMIT: usize = 4096;

/// What a disconnect did on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisconnectOutcome {
    /// Connections closed, summed over the shards that answered.
    pub disconnected: u64,
    /// Whether every shard answered in time (false: `disconnected` counts only those
    /// that did; the others still close their connections when they get to it).
    pub complete: bool,
}

/// The future a [`Disconnector`] answers with.
pub type DisconnectFuture = Pin<Box<dyn Future<Output = DisconnectOutcome> + Send>>;

/// Closes this node's connections a [`DisconnectTarget`] names (implemented by the
/// binary over its shards, so this crate needs none of them).
pub trait Disconnector: Send + Sync + 'static {
    /// Closes the matching connections on every shard of this node and counts them,
    /// waiting a bounded time for each shard's count.
    fn disconnect(&self, target: DisconnectTarget) -> DisconnectFuture;
}

/// What a valid body looks like, for every refusal that is about its shape.
const SHAPE: &str =
    r#"the body must be one JSON object with one key: {"sub":"<user>"} or {"channel":"<name>"}"#;

/// Reads the target from a body: one JSON object with exactly one key, `sub` (a string
/// of 1 to [`MAX_SUB_BYTES`] bytes) or `channel` (a valid channel name).
fn parse_target(body: &[u8]) -> Result<DisconnectTarget, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| SHAPE.to_owned())?;
    let Some(object) = value.as_object() else {
        return Err(SHAPE.to_owned());
    };
    let mut keys = object.iter();
    let (Some((key, value)), None) = (keys.next(), keys.next()) else {
        return Err(SHAPE.to_owned());
    };
    let target = match key.as_str() {
        "sub" | "channel" => {
            let Some(text) = value.as_str() else {
                return Err(format!("\"{key}\" must be a string"));
            };
            if key == "sub" {
                DisconnectTarget::Sub(text.to_owned())
            } else {
                DisconnectTarget::Channel(text.to_owned())
            }
        }
        _ => return Err(SHAPE.to_owned()),
    };
    if target.is_valid(is_valid_channel) {
        return Ok(target);
    }
    Err(match target {
        DisconnectTarget::Sub(_) => format!("\"sub\" must be 1 to {MAX_SUB_BYTES} bytes"),
        DisconnectTarget::Channel(_) => "invalid channel name".to_owned(),
    })
}

/// A refused request: 400 with `message`, counted as `bad_disconnect`.
fn bad_request(message: &str) -> Response {
    Refusal::BadDisconnect.count();
    json_error(StatusCode::BAD_REQUEST, message)
}

/// `POST /disconnect`: 200 `{"disconnected":N}` (plus `"complete":false` when a shard did
/// not answer in time); 503 with the same fields plus `"error"` and `"cluster":false`
/// when the broker could not pass the request to the other nodes; 400 for any body but
/// `{"sub":..}` or `{"channel":..}`.
pub(crate) async fn disconnect(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("body too large: at most {DISCONNECT_BODY_LIMIT} bytes");
            return bad_request(&message);
        }
        Err(rejection) => return body_refused(&rejection),
    };
    let target = match parse_target(&body) {
        Ok(target) => target,
        Err(message) => return bad_request(&message),
    };
    tracing::info!(?target, "disconnect requested");
    let cluster = state.broker.disconnect_cluster(&target);
    let (local, cluster) = tokio::join!(state.disconnector.disconnect(target), cluster);
    let mut answer = serde_json::json!({ "disconnected": local.disconnected });
    if !local.complete {
        answer["complete"] = false.into();
    }
    match cluster {
        Ok(()) => json_response(StatusCode::OK, &answer),
        Err(err) => {
            tracing::warn!("a disconnect reached this node only: {err}");
            answer["cluster"] = false.into();
            answer["error"] = format!("disconnected on this node only: {err}").into();
            json_response(StatusCode::SERVICE_UNAVAILABLE, &answer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_or_a_channel_and_nothing_else() {
        let ok = |body: &str| parse_target(body.as_bytes());
        assert_eq!(
            ok(r#"{"sub":"user42"}"#),
            Ok(DisconnectTarget::Sub("user42".into()))
        );
        assert_eq!(
            ok(r#"{"channel":"news.eu"}"#),
            Ok(DisconnectTarget::Channel("news.eu".into()))
        );
        let longest = "é".repeat(MAX_SUB_BYTES / 2);
        assert!(ok(&serde_json::json!({ "sub": longest }).to_string()).is_ok());
        let too_long = "x".repeat(MAX_SUB_BYTES + 1);
        for (body, error) in [
            ("", SHAPE),
            ("sub=alice", SHAPE),
            ("[]", SHAPE),
            (r#""alice""#, SHAPE),
            ("{}", SHAPE),
            (r#"{"sub":"a","channel":"b"}"#, SHAPE),
            (r#"{"user":"a"}"#, SHAPE),
            (r#"{"sub":42}"#, r#""sub" must be a string"#),
            (r#"{"channel":null}"#, r#""channel" must be a string"#),
            (r#"{"sub":""}"#, r#""sub" must be 1 to 256 bytes"#),
            (r#"{"channel":"bad name"}"#, "invalid channel name"),
            (r#"{"channel":""}"#, "invalid channel name"),
        ] {
            assert_eq!(ok(body), Err(error.to_owned()), "{body}");
        }
        let body = serde_json::json!({ "sub": too_long }).to_string();
        assert_eq!(ok(&body), Err(r#""sub" must be 1 to 256 bytes"#.to_owned()));
    }
}
