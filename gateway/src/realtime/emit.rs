//! Cluster-wide emits, disconnects and offers, generic over the adapter, with [`Io`] choosing.
//!
//! The Redis adapter fails an emit before delivering to this replica's own sockets when Redis is
//! unreachable; [`emit_to`] then delivers locally and still reports the error, so local clients
//! miss nothing and the caller can tell the backend.

use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use shared::{
    events::{OfferAnswer, TRIP_OFFER, TripOffer},
    namespace::Namespace,
    rooms,
};
use socketioxide::{SocketIo, adapter::Adapter};

use super::Io;
use crate::telemetry::metrics::{self, DisconnectReason};

/// Some replicas could not be reached (Redis down); this replica's sockets were served.
#[derive(Debug, thiserror::Error)]
#[error("delivered on this replica only: {0}")]
pub struct ClusterUnreachable(pub String);

pub async fn emit_to<A: Adapter, T: Serialize + ?Sized>(
    io: &SocketIo<A>,
    ns: Namespace,
    rooms: Vec<String>,
    event: &str,
    data: &T,
) -> Result<(), ClusterUnreachable> {
    let Some(op) = io.of(ns.path()) else {
        return Ok(());
    };
    metrics::emit(ns, event);
    match op.clone().to(rooms.clone()).emit(event, data).await {
        Ok(()) => Ok(()),
        Err(error) => {
            metrics::redis_error("adapter_emit");
            if let Err(local) = op.local().to(rooms).emit(event, data).await {
                tracing::warn!(error = %local, "local emit failed too");
            }
            tracing::warn!(%error, event, nsp = %ns, "cluster emit failed; delivered locally");
            Err(ClusterUnreachable(error.to_string()))
        }
    }
}

/// Disconnects every socket of session `sid`, in every namespace, on every replica (an admin's
/// `admin:disconnect_session`). The `admin` disconnect counter counts this replica's sockets
/// only: the others are disconnected by the adapter, without the gateway's code running there.
pub async fn disconnect_session<A: Adapter>(
    io: &SocketIo<A>,
    sid: &str,
) -> Result<(), ClusterUnreachable> {
    let mut outcome = Ok(());
    for ns in Namespace::ALL {
        let Some(op) = io.of(ns.path()) else { continue };
        let local = op
            .clone()
            .local()
            .within(rooms::session(sid))
            .sockets()
            .len();
        metrics::session_disconnects(DisconnectReason::Admin, local);
        if let Err(error) = op.clone().within(rooms::session(sid)).disconnect().await {
            metrics::redis_error("adapter_disconnect");
            let _ = op.local().within(rooms::session(sid)).disconnect().await;
            outcome = Err(ClusterUnreachable(error.to_string()));
        }
    }
    outcome
}

/// The first well-formed answer of any socket of `driver`, within `expires_in`.
pub async fn offer<A: Adapter>(
    io: &SocketIo<A>,
    driver: &str,
    offer: &TripOffer,
    expires_in: Duration,
) -> Result<Option<OfferAnswer>, ClusterUnreachable> {
    let Some(op) = io.of(Namespace::Drivers.path()) else {
        return Ok(None);
    };
    metrics::emit(Namespace::Drivers, TRIP_OFFER);
    let stream = op
        .to(rooms::driver(driver))
        .timeout(expires_in)
        .emit_with_ack::<_, Value>(TRIP_OFFER, offer)
        .await
        .map_err(|e| {
            metrics::redis_error("adapter_emit_with_ack");
            ClusterUnreachable(e.to_string())
        })?;
    // The adapter may wait longer than the ack timeout for replicas that hold no socket: the
    // offer's own deadline bounds the wait.
    let answers = async move {
        let mut stream = std::pin::pin!(stream);
        while let Some((_, answer)) = stream.next().await {
            if let Some(answer) = answer.ok().and_then(well_formed) {
                return Some(answer);
            }
        }
        None
    };
    Ok(tokio::time::timeout(expires_in, answers)
        .await
        .ok()
        .flatten())
}

/// `{ "accept": bool }`, also when the client acknowledged with it as one argument of a list.
fn well_formed(value: Value) -> Option<OfferAnswer> {
    let value = match value {
        Value::Array(mut items) if items.len() == 1 => items.remove(0),
        other => other,
    };
    serde_json::from_value(value).ok()
}

impl Io {
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        ns: Namespace,
        rooms: Vec<String>,
        event: &str,
        data: &T,
    ) -> Result<(), ClusterUnreachable> {
        match self {
            Io::Single(io) => emit_to(io, ns, rooms, event, data).await,
            Io::Cluster(io) => emit_to(io, ns, rooms, event, data).await,
        }
    }

    pub async fn offer(
        &self,
        driver: &str,
        payload: &TripOffer,
        expires_in: Duration,
    ) -> Result<Option<OfferAnswer>, ClusterUnreachable> {
        match self {
            Io::Single(io) => offer(io, driver, payload, expires_in).await,
            Io::Cluster(io) => offer(io, driver, payload, expires_in).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn offer_answers_are_read_leniently_but_must_be_well_formed() {
        assert_eq!(
            well_formed(json!({"accept": true})),
            Some(OfferAnswer { accept: true })
        );
        assert_eq!(
            well_formed(json!([{"accept": false}])),
            Some(OfferAnswer { accept: false })
        );
        for bad in [
            json!({"accept": "yes"}),
            json!({}),
            json!(true),
            json!([{"accept": true}, 1]),
        ] {
            assert_eq!(well_formed(bad.clone()), None, "{bad}");
        }
    }
}
