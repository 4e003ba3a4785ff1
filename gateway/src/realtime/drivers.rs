//! `/drivers` events: `driver:status` and `driver:location`, with their forwarding to admins
//! and to the passenger of the driver's active trip.

use std::sync::Arc;

use serde_json::{Value, json};
use shared::events::{
    DRIVER_LOCATION, DRIVER_STATUS, DRIVER_STATUS_CHANGED, DriverLocationUpdate, DriverStatus,
    DriverStatusChanged, TRIP_DRIVER_LOCATION, TripDriverLocation,
};
use socketioxide::{SocketIo, adapter::Adapter, extract::SocketRef};

use super::{
    ack::{EventError, Reply, reply},
    context::SocketContext,
    deliver::{Recipient, send},
    events::on_event,
    services::Services,
    validate,
};
use crate::{clock::now_rfc3339, state::LocationOutcome};

/// A driver's new socket: its events, and the driver is present (connected somewhere).
pub async fn wire<A: Adapter>(s: &SocketRef<A>, svc: &Arc<Services>, ctx: &SocketContext) {
    on_event(
        s,
        svc,
        DRIVER_STATUS,
        |svc, io, ctx, payload, _| async move { status(&svc, &io, ctx.user_id(), payload).await },
    );
    on_event(
        s,
        svc,
        DRIVER_LOCATION,
        |svc, io, ctx, payload, _| async move { location(&svc, &io, ctx.user_id(), payload).await },
    );
    svc.presence.opened(ctx.user_id()).await;
}

pub async fn status<A: Adapter>(
    svc: &Services,
    io: &SocketIo<A>,
    driver: &str,
    payload: Option<Value>,
) -> Result<Reply, EventError> {
    let status = validate::driver_status(payload)?;
    let at = now_rfc3339();
    let previous = svc.presence.set_status(driver, status, &at).await?;
    if previous.unwrap_or(DriverStatus::Offline) != status {
        let change = DriverStatusChanged {
            driver_id: driver.to_owned(),
            status,
            at,
        };
        let log = svc.recovery.as_deref();
        let _ = Box::pin(send(
            io,
            log,
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
        let log = svc.recovery.as_deref();
        let _ = Box::pin(send(io, log, &Recipient::Admins, DRIVER_LOCATION, &update)).await;
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
        let log = svc.recovery.as_deref();
        let _ = Box::pin(send(io, log, &passenger, TRIP_DRIVER_LOCATION, &update)).await;
    }
    Ok(Reply::new())
}
