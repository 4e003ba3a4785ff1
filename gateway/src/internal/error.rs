//! The internal API's errors, and the probes' refusals: one enum, mapped once to status code and
//! JSON body (`{"error": {"code", "message"}}`, plus the fields the contract adds for offers and
//! probes). Every non-2xx answer of either listener is built here, so the request counters see
//! them all. Dependency errors are logged where they happen; their text never reaches a client.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{health::Readiness, input::Refused, realtime::deliver::ClusterUnreachable};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    InvalidPayload(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    /// A trip offer that reached no driver (`"delivered": false` in the body).
    #[error("{0}")]
    NotDelivered(NotDelivered),
    /// `/readyz`: the body lists the checks.
    #[error("not ready")]
    NotReady(Box<Readiness>),
    /// `/healthz` and Socket.IO before the namespaces exist or once draining.
    #[error("not accepting connections")]
    NotAccepting,
    /// A Socket.IO request from a browser origin `CORS_ORIGINS` does not list.
    #[error("origin not allowed")]
    OriginNotAllowed,
}

/// Why an offer was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotDelivered {
    #[error("the driver has no socket connected")]
    NoSocket,
    #[error("no answer from the driver within expiresInMs")]
    NoAnswer,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Self::InvalidPayload(_) => (StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            Self::Unavailable(_) | Self::NotReady(_) | Self::NotAccepting => {
                (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
            }
            Self::OriginNotAllowed => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            Self::NotDelivered(NotDelivered::NoSocket) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Self::NotDelivered(NotDelivered::NoAnswer) => {
                (StatusCode::GATEWAY_TIMEOUT, "UNAVAILABLE")
            }
        }
    }

    fn body(&self, code: &str) -> Value {
        let error = json!({ "code": code, "message": self.to_string() });
        match self {
            Self::NotDelivered(_) => json!({ "delivered": false, "error": error }),
            Self::NotReady(readiness) => json!({ "ok": false, "checks": readiness }),
            Self::NotAccepting => json!({ "ok": false, "error": error }),
            _ => json!({ "error": error }),
        }
    }
}

/// The emit reached this replica's sockets only; the cause was logged by the emit.
/// What a body that is not a JSON object is told (every POST body of the internal API is one).
pub const NOT_AN_OBJECT: &str = "body must be a JSON object";

/// A refused field of a request body (`crate::input`).
impl From<Refused> for ApiError {
    fn from(Refused(message): Refused) -> Self {
        ApiError::InvalidPayload(message)
    }
}

impl From<ClusterUnreachable> for ApiError {
    fn from(_: ClusterUnreachable) -> Self {
        Self::Unavailable(
            "delivered on this replica only: the cluster is unreachable; retry".into(),
        )
    }
}

impl From<crate::state::StateError> for ApiError {
    fn from(error: crate::state::StateError) -> Self {
        crate::telemetry::metrics::redis_error("state");
        tracing::error!(%error, kind = error.kind(), "internal request failed: state unavailable");
        Self::Unavailable("the state store is unreachable; retry".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        (status, Json(self.body(code))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: ApiError) -> (StatusCode, Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn offers_not_delivered_say_so_with_the_contract_codes() {
        let (status, body) = answer(ApiError::NotDelivered(NotDelivered::NoSocket)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["delivered"], false);
        assert_eq!(body["error"]["code"], "NOT_FOUND");
        let (status, body) = answer(ApiError::NotDelivered(NotDelivered::NoAnswer)).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(body["delivered"], false);
        assert_eq!(body["error"]["code"], "UNAVAILABLE");
    }

    #[tokio::test]
    async fn redis_error_text_never_reaches_the_client() {
        let cause =
            ClusterUnreachable("IO Error: Connection refused (os error 111) 10.0.0.7".into());
        let (status, body) = answer(cause.into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let text = body.to_string();
        assert!(
            !text.contains("os error") && !text.contains("10.0.0.7"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_replica_not_accepting_answers_json() {
        let (status, body) = answer(ApiError::NotAccepting).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["ok"], false);
        assert_eq!(body["error"]["code"], "UNAVAILABLE");
    }
}
