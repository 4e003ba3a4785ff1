//! `/livez`, `/readyz` (internal listener) and `/healthz` (public listener).

use std::sync::Arc;

use axum::{Json, extract::State, response::IntoResponse};
use serde_json::json;

use super::{error::ApiError, state::InternalState};
use crate::health::Health;

/// The process answers: it is not wedged.
pub async fn livez() -> impl IntoResponse {
    Json(json!({ "ok": true }))
}

/// 200 only when this replica can serve; the body says which check failed.
pub async fn readyz(State(state): State<InternalState>) -> Result<impl IntoResponse, ApiError> {
    let readiness = state.health.readiness(state.cluster).await;
    if !readiness.ready {
        return Err(ApiError::NotReady(Box::new(readiness)));
    }
    Ok(Json(json!({ "ok": true, "checks": readiness })))
}

/// For load balancers: 200 while accepting connections, 503 before that and once draining.
pub async fn healthz(State(health): State<Arc<Health>>) -> Result<impl IntoResponse, ApiError> {
    if !health.accepting() {
        return Err(ApiError::NotAccepting);
    }
    Ok(Json(json!({ "ok": true })))
}
