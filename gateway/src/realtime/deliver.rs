//! The one delivery path: every server → client event to a room goes through [`deliver`] (or
//! [`deliver_local`], for what every replica applies by itself), to a typed [`Recipient`] built
//! from `shared::rooms`; metrics, and the error handling below, live here once. Also the
//! cluster-wide disconnects and offers, generic over the adapter, with [`Io`] choosing. (What a
//! handler sends to the socket at hand, `hello` and the expiry notices, goes on that socket.)
//!
//! The Redis adapter fails an emit before delivering to this replica's own sockets when Redis is
//! unreachable; [`deliver`] then delivers locally and still reports the error, so local clients
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
use crate::recovery::log::RecoveryLog;
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

/// Who an event is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// Every socket of a driver (`/drivers`, `driver:{id}`).
    Driver(String),
    /// Every socket of a passenger (`/passengers`, `passenger:{id}`).
    Passenger(String),
    /// Every operations socket (`/admin`, `admin:all`).
    Admins,
    /// One socket, on whichever replica (`socket:{sid}`).
    Socket(Namespace, String),
    /// Rooms of one namespace as a backend's push named them (checked against the contract).
    Rooms(Namespace, Vec<String>),
    /// The sockets in the first rooms that are in none of the second (a push whose user rooms
    /// go through the recovery log, the rest of it to everyone else, each socket once).
    RoomsExcept(Namespace, Vec<String>, Vec<String>),
}

impl Recipient {
    pub fn namespace(&self) -> Namespace {
        match self {
            Self::Driver(_) => Namespace::Drivers,
            Self::Passenger(_) => Namespace::Passengers,
            Self::Admins => Namespace::Admin,
            Self::Socket(ns, _) | Self::Rooms(ns, _) | Self::RoomsExcept(ns, _, _) => *ns,
        }
    }

    pub fn rooms(&self) -> Vec<String> {
        match self {
            Self::Driver(id) => vec![rooms::driver(id)],
            Self::Passenger(id) => vec![rooms::passenger(id)],
            Self::Admins => vec![rooms::ADMIN_ALL.into()],
            Self::Socket(_, sid) => vec![rooms::socket(sid)],
            Self::Rooms(_, rooms) | Self::RoomsExcept(_, rooms, _) => rooms.clone(),
        }
    }

    /// The user a driver's or a passenger's recipient is.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Self::Driver(id) | Self::Passenger(id) => Some(id),
            _ => None,
        }
    }

    fn except(&self) -> Vec<String> {
        match self {
            Self::RoomsExcept(_, _, except) => except.clone(),
            _ => Vec::new(),
        }
    }
}

/// Sends `event` to `to`, cluster-wide.
pub async fn deliver<A: Adapter, T: Serialize + ?Sized>(
    io: &SocketIo<A>,
    to: &Recipient,
    event: &str,
    data: &T,
) -> Result<Emitted, ClusterUnreachable> {
    let (ns, rooms) = (to.namespace(), to.rooms());
    let Some(op) = io.of(ns.path()) else {
        return Ok(Emitted::default());
    };
    metrics::emit(ns, event);
    let except = to.except();
    match op
        .clone()
        .to(rooms.clone())
        .except(except.clone())
        .emit(event, data)
        .await
    {
        Ok(()) => Ok(Emitted::default()),
        // The cluster heard it; some sockets of this replica could not queue it.
        Err(BroadcastError::Socket(errors)) => Ok(dropped(ns, event, &errors)),
        Err(error) => {
            metrics::redis_error("adapter_emit");
            let local = match op.local().to(rooms).except(except).emit(event, data).await {
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

/// Sends `event` to `to`, cluster-wide; what goes to a driver's or a passenger's own room goes
/// through the recovery log when recovery is on (recovery.md): kept under an offset, published
/// to every replica in order, and sent by each to its sockets' gates. If the log cannot take it
/// (Redis down), it is delivered without an offset as any emit, and the error returned.
pub async fn deliver_kept<T: Serialize + ?Sized>(
    io: &Io,
    log: Option<&dyn RecoveryLog>,
    to: &Recipient,
    event: &str,
    data: &T,
) -> Result<Emitted, ClusterUnreachable> {
    let ns = to.namespace();
    let (kept, rest): (Vec<String>, Vec<String>) = to
        .rooms()
        .into_iter()
        .partition(|room| rooms::is_user_room(ns, room));
    let Some(log) = log.filter(|_| !kept.is_empty()) else {
        return io.deliver(to, event, data).await;
    };
    let value = serde_json::to_value(data).map_err(|e| ClusterUnreachable(e.to_string()))?;
    let mut outcome = Ok(Emitted::default());
    if !rest.is_empty() {
        let others = Recipient::RoomsExcept(ns, rest, kept.clone());
        outcome = io.deliver(&others, event, data).await;
    }
    // Each room numbers its own events, so a push's rooms are kept at once: one script call
    // per shard (one in all on a single Redis), the data serialised once.
    let appended = log.append_all(ns, &kept, event, &value).await;
    for (room, appended) in kept.into_iter().zip(appended) {
        if let Err(error) = appended {
            metrics::redis_error("recovery_append");
            tracing::warn!(%error, event, "event not kept for recovery; sent without an offset");
            let _ = io
                .deliver(&Recipient::Rooms(ns, vec![room]), event, data)
                .await;
            outcome = Err(ClusterUnreachable(error.to_string()));
        }
    }
    outcome
}

/// Sends `event` to `to`'s sockets on this replica only, but not to those in `except` (a room):
/// for what every replica applies by itself (an auth event every replica hears). Returns how
/// many sockets it went to.
pub async fn deliver_local<A: Adapter, T: Serialize + ?Sized>(
    io: &SocketIo<A>,
    to: &Recipient,
    except: Option<String>,
    event: &str,
    data: &T,
) -> usize {
    let ns = to.namespace();
    let Some(op) = io.of(ns.path()) else { return 0 };
    let op = op
        .local()
        .to(to.rooms())
        .except(except.into_iter().collect::<Vec<_>>());
    let sockets = op.clone().sockets().len();
    if sockets > 0 {
        metrics::emit(ns, event);
    }
    match op.emit(event, data).await {
        Ok(()) => {}
        Err(BroadcastError::Socket(errors)) => {
            dropped(ns, event, &errors);
        }
        Err(error) => tracing::warn!(%error, event, nsp = %ns, "local emit failed"),
    }
    sockets
}

/// How many of `to`'s sockets are on this replica, not counting those in `except`.
pub fn local_count<A: Adapter>(io: &SocketIo<A>, to: &Recipient, except: Option<String>) -> usize {
    io.of(to.namespace().path()).map_or(0, |op| {
        op.local()
            .to(to.rooms())
            .except(except.into_iter().collect::<Vec<_>>())
            .sockets()
            .len()
    })
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
    /// Sends `event` to `to`, cluster-wide ([`deliver`]).
    pub async fn deliver<T: Serialize + ?Sized>(
        &self,
        to: &Recipient,
        event: &str,
        data: &T,
    ) -> Result<Emitted, ClusterUnreachable> {
        on_io!(self, io => deliver(io, to, event, data).await)
    }

    /// Sends `event` to `to`'s sockets on this replica, except those in `except`.
    pub async fn deliver_local<T: Serialize + ?Sized>(
        &self,
        to: &Recipient,
        except: Option<String>,
        event: &str,
        data: &T,
    ) -> usize {
        on_io!(self, io => deliver_local(io, to, except, event, data).await)
    }

    /// Disconnects `to`'s sockets, cluster-wide.
    pub async fn disconnect(&self, to: &Recipient) -> Result<(), ClusterUnreachable> {
        on_io!(self, io => disconnect(io, to).await)
    }

    /// Sockets in any of `rooms`, cluster-wide.
    pub async fn count(&self, ns: Namespace, rooms: Vec<String>) -> Option<usize> {
        on_io!(self, io => count(io, ns, rooms).await)
    }

    pub async fn offer(
        &self,
        driver: &str,
        payload: &TripOffer,
        expires_in: Duration,
    ) -> Result<Option<OfferAnswer>, ClusterUnreachable> {
        on_io!(self, io => offer(io, driver, payload, expires_in).await)
    }
}

/// Disconnects `to`'s sockets, cluster-wide (a replaced socket).
pub async fn disconnect<A: Adapter>(
    io: &SocketIo<A>,
    to: &Recipient,
) -> Result<(), ClusterUnreachable> {
    let Some(op) = io.of(to.namespace().path()) else {
        return Ok(());
    };
    op.to(to.rooms()).disconnect().await.map_err(|error| {
        metrics::redis_error("adapter_disconnect");
        ClusterUnreachable(error.to_string())
    })
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
