//! `POST /internal/v1/trips/{tripId}/events`: the trip lifecycle, decided by
//! [`crate::trips::decide`] and stored compare-and-set, then emitted.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::events::{TRIP_UPDATED, TripStatus, TripUpdated};

use super::{
    body::JsonBody,
    error::{ApiError, NOT_AN_OBJECT},
    state::{InternalState, Live},
};
use crate::{
    clock::now_rfc3339,
    input::{self, Field, Id, UserId},
    realtime::deliver::Recipient,
    state::TripWrite,
    trips::{TripDecision, TripEvent, decide},
};

/// Concurrent writers of one trip retry this often before giving up with 409.
const MAX_ATTEMPTS: usize = 5;

pub async fn event(
    State(state): State<InternalState>,
    Path(trip_id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let live = state.live()?;
    let Id(trip_id) = Id::parse("tripId", &trip_id)?;
    let (event, data) = parse(body)?;
    for _ in 0..MAX_ATTEMPTS {
        let current = live.state.trip(&trip_id).await?;
        let (status, driver_id, bind, unbind, replaced_driver) =
            match decide(current.as_ref(), &event) {
                TripDecision::Duplicate => {
                    return Ok(Json(json!({ "ok": true, "duplicate": true })));
                }
                TripDecision::Conflict(message) => return Err(ApiError::Conflict(message)),
                TripDecision::Accept {
                    status,
                    driver_id,
                    bind,
                    unbind,
                    replaced_driver,
                } => (status, driver_id, bind, unbind, replaced_driver),
            };
        let write = TripWrite {
            trip_id: trip_id.clone(),
            expected_version: current.map(|t| t.version),
            status,
            passenger_id: event.passenger_id.clone(),
            driver_id: driver_id.clone(),
            bind,
            unbind,
        };
        if !live.state.write_trip(&write).await? {
            continue; // another event of this trip landed in between: decide again
        }
        let update = TripUpdated {
            trip_id: trip_id.clone(),
            status,
            passenger_id: event.passenger_id.clone(),
            driver_id,
            data: data.clone(),
            at: now_rfc3339(),
        };
        if !announce(live, update, replaced_driver).await {
            return Err(ApiError::Unavailable(
                "stored, but delivered on this replica only: the cluster is unreachable".into(),
            ));
        }
        return Ok(Json(json!({ "ok": true })));
    }
    Err(ApiError::Conflict(
        "the trip is being updated concurrently; retry".into(),
    ))
}

/// Sends a stored change to the passenger, the driver and admins, and `trip:updated`
/// (CANCELLED) to a driver the change replaced. `false` when some went to this replica only.
async fn announce(live: &Live, update: TripUpdated, replaced_driver: Option<String>) -> bool {
    let send = |to: Recipient, payload: TripUpdated| async move {
        live.delivery
            .send(&to, TRIP_UPDATED, &payload)
            .await
            .is_ok()
    };
    let mut delivered = send(
        Recipient::Passenger(update.passenger_id.clone()),
        update.clone(),
    )
    .await;
    if let Some(driver) = &update.driver_id {
        delivered &= send(Recipient::Driver(driver.clone()), update.clone()).await;
    }
    delivered &= send(Recipient::Admins, update.clone()).await;
    if let Some(previous) = replaced_driver {
        let cancelled = TripUpdated {
            status: TripStatus::Cancelled,
            driver_id: Some(previous.clone()),
            ..update
        };
        delivered &= send(Recipient::Driver(previous), cancelled).await;
    }
    delivered
}

/// `{ type, passengerId, driverId?, data? }`; 400 names the first problem.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TripBody {
    #[serde(default, rename = "type")]
    status: Field<TripStatus>,
    #[serde(default)]
    passenger_id: Field<UserId>,
    #[serde(default)]
    driver_id: Field<UserId>,
    #[serde(default)]
    data: Value,
}

fn parse(body: Value) -> Result<(TripEvent, Value), ApiError> {
    let body: TripBody = input::decode(Some(body), NOT_AN_OBJECT)?;
    let status = body.status.required("type")?;
    let UserId(passenger_id) = body.passenger_id.required("passengerId")?;
    let driver_id = body.driver_id.optional("driverId")?.map(|UserId(id)| id);
    if status == TripStatus::DriverAssigned && driver_id.is_none() {
        return Err(ApiError::InvalidPayload(
            "DRIVER_ASSIGNED requires driverId".into(),
        ));
    }
    Ok((
        TripEvent {
            status,
            passenger_id,
            driver_id,
        },
        body.data,
    ))
}

/// Trip event bodies from any backend: decoded with their invariants, or `400`; never a panic.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{json, json_object};

    proptest! {
        #[test]
        fn any_body_is_decoded_or_refused(body in prop_oneof![json(), json_object()]) {
            match parse(body) {
                Ok((event, _)) => {
                    prop_assert!(uuid::Uuid::parse_str(&event.passenger_id).is_ok());
                    prop_assert!(event.status != TripStatus::DriverAssigned || event.driver_id.is_some());
                }
                Err(error) => prop_assert!(matches!(error, ApiError::InvalidPayload(_))),
            }
        }
    }
}
