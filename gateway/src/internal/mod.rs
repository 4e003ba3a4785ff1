//! The internal HTTP API (internal listener): auth events, trips, offers, generic push, probes.
//!
//! Everything under `/internal/v1/` needs `Authorization: Bearer $INTERNAL_API_TOKEN`; probes
//! do not (kubelets carry no token), nor does `/metrics` (Prometheus; the listener is internal).
//! Errors are [`ApiError`]s, bodies JSON. Every request gets a span and is counted
//! ([`observe`]).

mod body;
mod emit;
mod error;
mod fields;
mod metrics;
mod observe;
mod offers;
mod probes;
mod sessions;
mod trips;

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::header::AUTHORIZATION,
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};

pub use error::ApiError;
pub use probes::healthz;

use crate::{
    config::Secret,
    health::Health,
    realtime::{Io, presence::LocalPresence, sessions::SessionEvents},
    state::StateEngine,
};

/// Largest request body of the internal API.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the internal handlers share.
#[derive(Clone)]
pub struct InternalState {
    pub token: Secret,
    pub health: Arc<Health>,
    /// Set once Socket.IO is up; until then the API answers 503.
    pub live: Arc<std::sync::OnceLock<Live>>,
    pub cluster: bool,
}

/// What the endpoints act on, once the replica has started.
#[derive(Clone)]
pub struct Live {
    pub io: Io,
    /// The recovery log; `None` when recovery is off.
    pub recovery: Option<Arc<dyn crate::recovery::log::RecoveryLog>>,
    pub state: Arc<dyn StateEngine>,
    pub sessions: Arc<SessionEvents>,
    pub presence: Arc<LocalPresence>,
}

impl Live {
    /// Sends `event` to `to`, cluster-wide, kept for recovery when it goes to a user's room.
    pub async fn deliver<T: serde::Serialize + ?Sized>(
        &self,
        to: &crate::realtime::deliver::Recipient,
        event: &str,
        data: &T,
    ) -> Result<crate::realtime::deliver::Emitted, crate::realtime::deliver::ClusterUnreachable>
    {
        crate::realtime::deliver::deliver_kept(&self.io, self.recovery.as_deref(), to, event, data)
            .await
    }
}

impl InternalState {
    fn live(&self) -> Result<&Live, ApiError> {
        self.live
            .get()
            .ok_or_else(|| ApiError::Unavailable("the replica is starting".into()))
    }
}

pub fn router(state: InternalState) -> Router {
    let api = Router::new()
        .route("/sessions/{sid}/revoke", post(sessions::revoke))
        .route("/sessions/{sid}/refresh", post(sessions::refresh))
        .route("/trips/{trip_id}/events", post(trips::event))
        .route("/drivers/{driver_id}/offers", post(offers::offer))
        .route("/emit", post(emit::emit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_bearer,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .nest("/internal/v1", api)
        .route("/livez", get(probes::livez))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(metrics::metrics))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        // After the fallback, so it is observed too (as `route="unmatched"`).
        .layer(middleware::from_fn(observe::observe))
        .with_state(state)
}

async fn require_bearer(
    State(state): State<InternalState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), state.token.expose().as_bytes()) => {
            Ok(next.run(request).await)
        }
        _ => Err(ApiError::Unauthorized),
    }
}

/// Compares without leaking, through timing, how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares_whole_tokens() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"abcd"));
        assert!(!super::constant_time_eq(b"", b"a"));
    }
}
