//! The admin API's responses: JSON bodies, `{"error": ..}` errors, and the status each
//! [`PublishError`] answers with.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::PublishError;

/// `body` as `application/json` with `status`.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `{"error": message}` with `status`.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    json_response(status, &serde_json::json!({ "error": message }))
}

impl IntoResponse for PublishError {
    /// 413, 400 or 503; a publish delivered on this node only also says
    /// `"local_delivery": true, "remote_delivery": false`.
    fn into_response(self) -> Response {
        let status = match self {
            PublishError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            PublishError::BadChannel => StatusCode::BAD_REQUEST,
            PublishError::Overloaded
            | PublishError::Unavailable(_)
            | PublishError::LocalOnly(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if let PublishError::LocalOnly(_) = self {
            let body = serde_json::json!({
                "error": self.to_string(),
                "local_delivery": true,
                "remote_delivery": false,
            });
            return json_response(status, &body);
        }
        json_error(status, &self.to_string())
    }
}
