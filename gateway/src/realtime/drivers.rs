//! `/drivers` events: `driver:status` and `driver:location`, with their forwarding to admins
//! and to the passenger of the driver's active trip.

use serde_json::{Value, json};
use shared::events::{
    DRIVER_LOCATION, DRIVER_STATUS_CHANGED, DriverLocationUpdate, DriverStatus,
    DriverStatusChanged, TRIP_DRIVER_LOCATION, TripDriverLocation,
};
use socketioxide::{SocketIo, adapter::Adapter};

use super::{
    Services,
    ack::{EventError, Reply, reply},
    deliver::{Recipient, deliver},
    validate,
};
use crate::{clock::now_rfc3339, state::LocationOutcome};

pub async fn status<A: Adapter>(
    svc: &Services,
    io: &SocketIo<A>,
    driver: &str,
    payload: Option<Value>,
) -> Result<Reply, EventError> {
    let status = validate::driver_status(payload)?;
    let at = now_rfc3339();
    let previous = svc.state.set_status(driver, status, &at).await?;
    if previous.unwrap_or(DriverStatus::Offline) != status {
        let change = DriverStatusChanged {
            driver_id: driver.to_owned(),
            status,
            at,
        };
        let _ = Box::pin(deliver(
            io,
            &Recipient::Admins,
            DRIVER_STATUS_CHANGED,
            &change,
        ))
        .await;
    }
    Ok(reply([("status", json!(status))]))
}

pub async fn location<A: Adapter>(
    svc: &Services,
    io: &SocketIo<A>,
    driver: &str,
    payload: Option<Value>,
) -> Result<Reply, EventError> {
    let position = validate::location(payload, now_rfc3339())?;
    let active_trip = match svc.state.record_location(driver, &position).await? {
        LocationOutcome::RateLimited => return Err(EventError::RateLimited),
        LocationOutcome::Accepted { active_trip } => active_trip,
    };
    if svc.admin_throttle.first_this_second(driver) {
        let update = DriverLocationUpdate {
            driver_id: driver.to_owned(),
            lat: position.lat,
            lng: position.lng,
            heading: position.heading,
            speed: position.speed,
            at: position.at.clone(),
        };
        // Boxed here and below: the adapter's broadcast is a large future, and most updates
        // forward nothing; inline, every update's future would carry (and move) its size.
        let _ = Box::pin(deliver(io, &Recipient::Admins, DRIVER_LOCATION, &update)).await;
    }
    if let Some(trip) = active_trip {
        let update = TripDriverLocation {
            trip_id: trip.trip_id,
            driver_id: driver.to_owned(),
            lat: position.lat,
            lng: position.lng,
            heading: position.heading,
            speed: position.speed,
            at: position.at,
        };
        let passenger = Recipient::Passenger(trip.passenger_id);
        let _ = Box::pin(deliver(io, &passenger, TRIP_DRIVER_LOCATION, &update)).await;
    }
    Ok(Reply::new())
}
