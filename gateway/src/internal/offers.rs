//! `POST /internal/v1/drivers/{driverId}/offers`: offer a trip to one driver and wait for the
//! first well-formed answer of any of the driver's sockets, on whichever replica holds them.

use std::time::Duration;

use axum::{
    Json,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::events::TripOffer;
use time::OffsetDateTime;

use super::{
    body::JsonBody,
    error::{ApiError, NOT_AN_OBJECT, NotDelivered},
    state::InternalState,
};
use crate::{
    clock::format_rfc3339,
    input::{self, Count, Field, Id, UserId},
    telemetry::metrics::{self, OfferOutcome},
};

pub const MAX_EXPIRES_IN_MS: u64 = 30_000;

pub async fn offer(
    State(state): State<InternalState>,
    Path(driver_id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let live = state.live()?;
    let UserId(driver_id) = UserId::parse("driverId", &driver_id)?;
    let OfferRequest {
        offer_id,
        trip_id,
        expires_in,
        data,
    } = parse(body)?;
    // Nobody there, nor between two connections: answer now rather than after the timeout.
    if !live.state.is_reachable(&driver_id).await? {
        metrics::offer(OfferOutcome::NoSocket);
        return Err(ApiError::NotDelivered(NotDelivered::NoSocket));
    }
    let payload = TripOffer {
        offer_id,
        trip_id,
        expires_at: format_rfc3339(OffsetDateTime::now_utc() + expires_in),
        data,
    };
    let dispatched = live
        .offers
        .dispatch(&live.delivery, &driver_id, payload, expires_in)
        .await;
    match dispatched {
        Ok(Some(answer)) => {
            metrics::offer(OfferOutcome::Answered);
            Ok(Json(json!({ "ok": true, "delivered": true, "response": answer })).into_response())
        }
        Ok(None) => {
            metrics::offer(OfferOutcome::Timeout);
            Err(ApiError::NotDelivered(NotDelivered::NoAnswer))
        }
        Err(error) => {
            tracing::warn!(%error, driver = driver_id, "offer not sent");
            Err(ApiError::Unavailable(
                "the cluster is unreachable; the offer was not sent, retry".into(),
            ))
        }
    }
}

/// An offer's body, checked.
#[derive(Debug)]
struct OfferRequest {
    offer_id: String,
    trip_id: String,
    expires_in: Duration,
    data: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OfferBody {
    #[serde(default)]
    offer_id: Field<Id>,
    #[serde(default)]
    trip_id: Field<Id>,
    #[serde(default)]
    expires_in_ms: Field<Count<MAX_EXPIRES_IN_MS>>,
    #[serde(default)]
    data: Value,
}

fn parse(body: Value) -> Result<OfferRequest, ApiError> {
    let body: OfferBody = input::decode(Some(body), NOT_AN_OBJECT)?;
    let Id(offer_id) = body.offer_id.required("offerId")?;
    let Id(trip_id) = body.trip_id.required("tripId")?;
    let Count(expires_in_ms) = body.expires_in_ms.required_or(
        "expiresInMs",
        &format!("expiresInMs must be an integer within [1, {MAX_EXPIRES_IN_MS}]"),
    )?;
    Ok(OfferRequest {
        offer_id,
        trip_id,
        expires_in: Duration::from_millis(expires_in_ms),
        data: body.data,
    })
}

/// Offer bodies from any backend: decoded within bounds, or `400`; never a panic.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{json, json_object};

    proptest! {
        #[test]
        fn any_body_is_decoded_or_refused(body in prop_oneof![json(), json_object()]) {
            match parse(body) {
                Ok(offer) => {
                    prop_assert!(!offer.offer_id.is_empty() && !offer.trip_id.is_empty());
                    prop_assert!((1..=MAX_EXPIRES_IN_MS).contains(&(offer.expires_in.as_millis() as u64)));
                }
                Err(error) => prop_assert!(matches!(error, ApiError::InvalidPayload(_))),
            }
        }
    }
}
