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
use socketioxide::{BroadcastError, SocketError, SocketIo, adapter::Adapter};

use super::Io;
use crate::telemetry::metrics::{self, DisconnectReason};

/// Some replicas could not be reached (Redis down); this replica's sockets were served.
#[derive(Debug, thiserror::Error)]
#[error("delivered on this replica only: {0}")]
pub struct ClusterUnreachable(pub String);

/// What an emit did on this replica: sockets whose send buffer was full. socketioxide closed
/// their transports (the clients reconnect, knowing they missed packets); other replicas do the
/// same with theirs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    pub dropped: usize,
}

pub async fn emit_to<A: Adapter, T: Serialize + ?Sized>(
    io: &SocketIo<A>,
    ns: Namespace,
    rooms: Vec<String>,
    event: &str,
    data: &T,
) -> Result<Emitted, ClusterUnreachable> {
    let Some(op) = io.of(ns.path()) else {
        return Ok(Emitted::default());
    };
    metrics::emit(ns, event);
    match op.clone().to(rooms.clone()).emit(event, data).await {
        Ok(()) => Ok(Emitted::default()),
        // The cluster heard it; some sockets of this replica could not queue it.
        Err(BroadcastError::Socket(errors)) => Ok(dropped(ns, event, &errors)),
        Err(error) => {
            metrics::redis_error("adapter_emit");
            let local = match op.local().to(rooms).emit(event, data).await {
                Ok(()) => Emitted::default(),
                Err(BroadcastError::Socket(errors)) => dropped(ns, event, &errors),
                Err(local) => {
                    tracing::warn!(error = %local, "local emit failed too");
                    Emitted::default()
                }
            };
            tracing::warn!(%error, event, nsp = %ns, dropped = local.dropped, "cluster emit failed; delivered locally");
            Err(ClusterUnreachable(error.to_string()))
        }
    }
}

fn dropped(ns: Namespace, event: &str, errors: &[SocketError]) -> Emitted {
    let full = errors
        .iter()
        .filter(|e| matches!(e, SocketError::InternalChannelFull))
        .count();
    if full > 0 {
        metrics::emits_dropped(ns, full);
        tracing::warn!(event, nsp = %ns, sockets = full, "send buffers full: transports closed");
    }
    Emitted { dropped: full }
}

/// How many sockets, cluster-wide, are in any of `rooms` (each counted once); `None` when the
/// other replicas did not answer in time.
pub async fn count<A: Adapter>(
    io: &SocketIo<A>,
    ns: Namespace,
    rooms: Vec<String>,
) -> Option<usize> {
    let op = io.of(ns.path())?;
    tokio::time::timeout(COUNT_TIMEOUT, op.to(rooms).fetch_sockets())
        .await
        .ok()?
        .ok()
        .map(|sockets| sockets.len())
}

/// How long a push waits for the other replicas' socket counts.
const COUNT_TIMEOUT: Duration = Duration::from_millis(1000);

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
    ) -> Result<Emitted, ClusterUnreachable> {
        match self {
            Io::Single(io) => emit_to(io, ns, rooms, event, data).await,
            Io::Cluster(io) => emit_to(io, ns, rooms, event, data).await,
        }
    }

    /// Sockets in any of `rooms`, cluster-wide.
    pub async fn count(&self, ns: Namespace, rooms: Vec<String>) -> Option<usize> {
        match self {
            Io::Single(io) => count(io, ns, rooms).await,
            Io::Cluster(io) => count(io, ns, rooms).await,
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
