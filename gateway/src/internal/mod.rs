//! The internal HTTP API (internal listener): auth events, trips, offers, generic push, probes.
//!
//! Everything under `/internal/v1/` needs `Authorization: Bearer $INTERNAL_API_TOKEN`; probes
//! do not (kubelets carry no token), nor does `/metrics` (Prometheus; the listener is internal).
//! Errors are [`ApiError`]s, bodies JSON. Every request gets a span and is counted
//! ([`observe`]).

mod body;
mod emit;
mod error;
mod metrics;
mod observe;
mod offers;
mod probes;
mod sessions;
mod state;
mod trips;

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
pub use state::{InternalState, Live, MAX_BODY_BYTES};

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
