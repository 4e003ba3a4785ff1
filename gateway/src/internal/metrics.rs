//! `GET /metrics` (internal listener): the Prometheus text exposition of this replica.

use axum::{
    extract::State,
    http::header::CONTENT_TYPE,
    response::{IntoResponse, Response},
};

use super::state::InternalState;
use crate::telemetry::metrics::{self, Snapshot};

pub async fn metrics(State(state): State<InternalState>) -> Response {
    let sockets = state
        .live
        .get()
        .map(|live| live.delivery.io.local_counts())
        .unwrap_or_default();
    let ready = state.health.readiness(state.cluster).await.ready;
    let (redis_up, pool) = state.health.dependencies(state.cluster);
    let text = metrics::render(Snapshot {
        sockets,
        ready,
        redis_up,
        pool,
    });
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}
