//! `POST /internal/v1/sessions/{sid}/revoke` and `.../{oldSid}/refresh`.

use axum::{
    Json,
    extract::{Path, State},
};
use serde_json::{Value, json};
use shared::auth_events::{AuthEvent, RefreshRequest, RevokeRequest};
use uuid::Uuid;

use super::{ApiError, InternalState, body::JsonBody};
use crate::realtime::sessions::Published;

/// Longest `sid` or `reason` accepted: a jti is an id, a reason a word or two.
const MAX_FIELD_CHARS: usize = 256;

pub async fn revoke(
    State(state): State<InternalState>,
    Path(sid): Path<String>,
    JsonBody(body): JsonBody<RevokeRequest>,
) -> Result<Json<Value>, ApiError> {
    let sid = checked_sid("sid", sid)?;
    let user_id = checked_user_id(&body.user_id)?;
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
    let old_sid = checked_sid("oldSid", old_sid)?;
    let user_id = checked_user_id(&body.user_id)?;
    let new_sid = checked_sid("newSid", body.new_sid)?;
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
    let sessions = state
        .sessions
        .get()
        .ok_or_else(|| ApiError::Unavailable("the replica is starting".into()))?;
    match sessions.publish(event).await {
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

fn checked_sid(field: &str, sid: String) -> Result<String, ApiError> {
    let trimmed = sid.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_FIELD_CHARS {
        return Err(ApiError::InvalidPayload(format!(
            "{field} must be a non-empty string of at most {MAX_FIELD_CHARS} characters"
        )));
    }
    Ok(trimmed.to_owned())
}

fn checked_user_id(user_id: &str) -> Result<String, ApiError> {
    Uuid::parse_str(user_id)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::InvalidPayload("userId must be a UUID".into()))
}
