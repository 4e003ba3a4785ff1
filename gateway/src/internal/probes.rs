//! `/livez`, `/readyz` (internal listener) and `/healthz` (public listener).

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use super::InternalState;
use crate::health::Health;

/// The process answers: it is not wedged.
pub async fn livez() -> impl IntoResponse {
    Json(json!({ "ok": true }))
}

/// 200 only when this replica can serve; the body says which check failed.
pub async fn readyz(State(state): State<InternalState>) -> impl IntoResponse {
    let readiness = state.health.readiness(state.cluster).await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ok": readiness.ready, "checks": readiness })),
    )
}

/// For load balancers: 200 while accepting connections, 503 before that and once draining.
pub async fn healthz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.accepting() {
        (StatusCode::OK, Json(json!({ "ok": true })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "ok": false, "error": { "code": "UNAVAILABLE", "message": "not accepting connections" } }),
            ),
        )
    }
}
