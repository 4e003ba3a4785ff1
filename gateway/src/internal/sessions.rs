//! `POST /internal/v1/sessions/{sid}/revoke` and `.../{oldSid}/refresh`.

use axum::{
    Json,
    extract::{Path, State},
};
use serde_json::{Value, json};
use shared::auth_events::{AuthEvent, RefreshRequest, RevokeRequest};

use super::{body::JsonBody, error::ApiError, state::InternalState};
use crate::{
    input::{Id, UserId},
    realtime::sessions::Published,
};

/// Longest `reason` accepted: a word or two.
const MAX_FIELD_CHARS: usize = 256;

pub async fn revoke(
    State(state): State<InternalState>,
    Path(sid): Path<String>,
    JsonBody(body): JsonBody<RevokeRequest>,
) -> Result<Json<Value>, ApiError> {
    let Id(sid) = Id::parse("sid", &sid)?;
    let UserId(user_id) = UserId::parse("userId", &body.user_id)?;
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_FIELD_CHARS)
    {
        return Err(ApiError::InvalidPayload(format!(
            "reason must be at most {MAX_FIELD_CHARS} characters"
        )));
    }
    publish(
        &state,
        AuthEvent::SessionRevoked {
            sid,
            user_id,
            reason: body.reason,
            at: None,
        },
    )
    .await
}

pub async fn refresh(
    State(state): State<InternalState>,
    Path(old_sid): Path<String>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Json<Value>, ApiError> {
    let Id(old_sid) = Id::parse("oldSid", &old_sid)?;
    let UserId(user_id) = UserId::parse("userId", &body.user_id)?;
    let Id(new_sid) = Id::parse("newSid", &body.new_sid)?;
    publish(
        &state,
        AuthEvent::SessionRefreshed {
            old_sid,
            new_sid,
            user_id,
        },
    )
    .await
}

async fn publish(state: &InternalState, event: AuthEvent) -> Result<Json<Value>, ApiError> {
    match state.live()?.sessions.publish(event).await {
        Ok(Published::Broadcast { replicas }) => {
            Ok(Json(json!({ "ok": true, "replicas": replicas })))
        }
        Ok(Published::Applied(effect)) => Ok(Json(json!({
            "ok": true,
            "replicas": 1,
            "disconnected": effect.disconnected,
            "notified": effect.notified,
        }))),
        Err(error) => {
            tracing::error!(%error, "auth event not published");
            Err(ApiError::Unavailable(
                "the cluster could not be reached; the event was applied on this replica only, retry".into(),
            ))
        }
    }
}
