//! `/admin` queries and actions: stats, nearby drivers, a driver's state, disconnecting a session.

use std::sync::Arc;

use serde_json::{Value, json};
use shared::{
    events::{ADMIN_DISCONNECT_SESSION, ADMIN_DRIVER_STATE, ADMIN_DRIVERS_NEARBY, ADMIN_STATS},
    namespace::UserType,
};
use socketioxide::{SocketIo, adapter::Adapter, extract::SocketRef};

use super::{
    ack::{EventError, Reply, reply},
    context::{AdminSocketData, SocketData},
    deliver::disconnect_session as disconnect_everywhere,
    events::on_event,
    services::Services,
    validate,
};

/// An operations socket's events.
pub fn wire<A: Adapter>(s: &SocketRef<A>, svc: &Arc<Services>) {
    on_event(s, svc, ADMIN_STATS, |svc, _, _, _, _| async move {
        stats(&svc).await
    });
    on_event(
        s,
        svc,
        ADMIN_DRIVERS_NEARBY,
        |svc, _, _, payload, _| async move { drivers_nearby(&svc, payload).await },
    );
    on_event(
        s,
        svc,
        ADMIN_DRIVER_STATE,
        |svc, _, _, payload, _| async move { driver_state(&svc, payload).await },
    );
    on_event(
        s,
        svc,
        ADMIN_DISCONNECT_SESSION,
        |_, io, ctx, payload, _| async move {
            match &ctx.data {
                SocketData::Admin(data) => disconnect_session(&io, data, payload).await,
                _ => Err(EventError::Forbidden("admins only".into())),
            }
        },
    );
}

pub async fn stats(svc: &Services) -> Result<Reply, EventError> {
    let mut nodes = svc.state.live_nodes().await?;
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let (drivers, passengers, admin) = nodes.iter().fold((0, 0, 0), |(d, p, a), n| {
        (d + n.drivers, p + n.passengers, a + n.admin)
    });
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|n| {
            json!({
                "nodeId": n.node_id,
                "sockets": { "drivers": n.drivers, "passengers": n.passengers, "admin": n.admin },
            })
        })
        .collect();
    Ok(reply([
        ("nodes", Value::Array(nodes)),
        (
            "totals",
            json!({ "drivers": drivers, "passengers": passengers, "admin": admin }),
        ),
    ]))
}

pub async fn drivers_nearby(svc: &Services, payload: Option<Value>) -> Result<Reply, EventError> {
    let query = validate::nearby(payload)?;
    let drivers: Vec<Value> = svc
        .state
        .drivers_nearby(&query)
        .await?
        .into_iter()
        .map(|d| {
            json!({
                "driverId": d.driver_id,
                "lat": d.lat,
                "lng": d.lng,
                "distanceM": (d.distance_m * 10.0).round() / 10.0,
                "status": d.status,
                "at": d.at,
            })
        })
        .collect();
    Ok(reply([("drivers", Value::Array(drivers))]))
}

pub async fn driver_state(svc: &Services, payload: Option<Value>) -> Result<Reply, EventError> {
    let driver_id = validate::driver_id(payload)?;
    let state = svc
        .state
        .driver_state(&driver_id)
        .await?
        .ok_or_else(|| EventError::NotFound(format!("driver {driver_id} was never seen")))?;
    let last_location = state.last_location.map(|p| {
        json!({
            "lat": p.lat, "lng": p.lng, "heading": p.heading, "speed": p.speed,
            "accuracy": p.accuracy, "recordedAt": p.recorded_at, "at": p.at,
        })
    });
    Ok(reply([(
        "driver",
        json!({
            "driverId": driver_id,
            "status": state.status,
            "connected": state.connected,
            "lastLocation": last_location,
            "activeTripId": state.active_trip_id,
        }),
    )]))
}

pub async fn disconnect_session<A: Adapter>(
    io: &SocketIo<A>,
    admin: &AdminSocketData,
    payload: Option<Value>,
) -> Result<Reply, EventError> {
    if admin.role != UserType::Admin.as_str() {
        return Err(EventError::Forbidden(format!(
            "role {} may not disconnect sessions",
            admin.role
        )));
    }
    let (sid, reason) = validate::disconnect(payload)?;
    tracing::info!(admin = %admin.user_id, sid, reason, "admin disconnects a session");
    disconnect_everywhere(io, &sid).await.map_err(|error| {
        tracing::error!(%error, "session disconnected on this replica only");
        EventError::Unavailable
    })?;
    Ok(Reply::new())
}
