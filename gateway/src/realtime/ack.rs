//! The one place where the outcome of a client event becomes its acknowledgement:
//! `{ "ok": true, ... }` or `{ "ok": false, "error": { "code", "message" } }`.

use serde_json::{Map, Value, json};
use shared::events::AckErrorCode;
use socketioxide::{adapter::Adapter, extract::AckSender};

use crate::{auth::handshake::HandshakeError, state::StateError};

/// Why a client event was refused.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The message names the field.
    #[error("{0}")]
    InvalidPayload(String),
    #[error("too many events; slow down")]
    RateLimited,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A dependency is down; the detail is logged, not sent.
    #[error("service unavailable, retry")]
    Unavailable,
    /// `auth:refresh` refused: the handshake's own text (`Invalid token`, `Access expired`, …).
    #[error("{0}")]
    Unauthorized(HandshakeError),
}

impl EventError {
    pub fn code(&self) -> AckErrorCode {
        match self {
            Self::InvalidPayload(_) => AckErrorCode::InvalidPayload,
            Self::RateLimited => AckErrorCode::RateLimited,
            Self::Forbidden(_) => AckErrorCode::Forbidden,
            Self::NotFound(_) => AckErrorCode::NotFound,
            Self::Unavailable => AckErrorCode::Unavailable,
            Self::Unauthorized(_) => AckErrorCode::Unauthorized,
        }
    }

    /// The `outcome` label of metrics and spans: the code in lower case.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidPayload(_) => "invalid_payload",
            Self::RateLimited => "rate_limited",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Unavailable => "unavailable",
            Self::Unauthorized(_) => "unauthorized",
        }
    }
}

/// The `outcome` label of an event's result.
pub fn outcome_label(outcome: &Result<Reply, EventError>) -> &'static str {
    outcome.as_ref().map_or_else(EventError::label, |_| "ok")
}

impl From<StateError> for EventError {
    fn from(error: StateError) -> Self {
        crate::telemetry::metrics::redis_error("state");
        tracing::error!(%error, kind = error.kind(), "client event failed: state unavailable");
        Self::Unavailable
    }
}

/// Fields of a successful answer, besides `ok`.
pub type Reply = Map<String, Value>;

pub fn reply(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Reply {
    fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The acknowledgement body of `outcome`.
pub fn body(outcome: Result<Reply, EventError>) -> Value {
    match outcome {
        Ok(mut fields) => {
            fields.insert("ok".into(), Value::Bool(true));
            Value::Object(fields)
        }
        Err(error) => json!({
            "ok": false,
            "error": { "code": error.code(), "message": error.to_string() },
        }),
    }
}

/// Answers the event's acknowledgement, when the client asked for one. A burst of events can
/// fill the socket's send buffer (128 packets): the ack then waits for the transport to drain
/// rather than being dropped (the vendored `AckSender::send_wait`, vendor/README.md); it fails
/// only once the socket is gone.
pub async fn send<A: Adapter>(ack: AckSender<A>, outcome: Result<Reply, EventError>) {
    if let Err(error) = ack.send_wait(&body(outcome)).await {
        tracing::debug!(%error, "acknowledgement not sent: socket closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_the_contract() {
        assert_eq!(
            body(Ok(reply([("status", json!("ONLINE"))]))),
            json!({"ok": true, "status": "ONLINE"})
        );
        assert_eq!(
            body(Err(EventError::InvalidPayload(
                "lat must be a number".into()
            ))),
            json!({"ok": false, "error": {"code": "INVALID_PAYLOAD", "message": "lat must be a number"}})
        );
        assert_eq!(
            body(Err(EventError::RateLimited))["error"]["code"],
            "RATE_LIMITED"
        );
        assert_eq!(
            body(Err(EventError::Unauthorized(HandshakeError::AccessExpired))),
            json!({"ok": false, "error": {"code": "UNAUTHORIZED", "message": "Access expired"}})
        );
    }

    #[test]
    fn outcome_labels_are_the_codes_in_lower_case() {
        for error in [
            EventError::InvalidPayload("x".into()),
            EventError::RateLimited,
            EventError::Forbidden("x".into()),
            EventError::NotFound("x".into()),
            EventError::Unavailable,
            EventError::Unauthorized(HandshakeError::InvalidToken),
        ] {
            let code = serde_json::to_value(error.code()).expect("code");
            assert_eq!(
                code.as_str().map(str::to_lowercase).as_deref(),
                Some(error.label())
            );
        }
        assert_eq!(outcome_label(&Ok(Reply::new())), "ok");
    }
}
