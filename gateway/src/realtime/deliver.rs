//! The one delivery service: every server → client event to a room goes through [`send`], to a
//! typed [`Recipient`] built from `shared::rooms`. What the event is decides whether it is kept
//! for recovery (`shared::events::is_recoverable`), not which function a caller picked: socket
//! handlers and the internal API send the same way. Metrics and the error handling below live
//! here once; so do the cluster-wide disconnects and offers, and the local ends (a kept entry
//! to its sockets' gates, a revocation notice a replica applies by itself). Generic over the
//! adapter, with [`super::io::Io`] choosing. Only what goes to the socket at hand (`hello`, the
//! expiry notices) is emitted elsewhere, on that socket.
//!
//! The Redis adapter fails an emit before delivering to this replica's own sockets when Redis is
//! unreachable; [`send`] then delivers locally and still reports the error, so local clients
//! miss nothing and the caller can tell the backend.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use shared::{
    events::{OfferAnswer, TRIP_OFFER, TripOffer, is_recoverable},
    namespace::Namespace,
    rooms,
};
use socketioxide::{BroadcastError, SocketError, SocketIo, adapter::Adapter, extract::SocketRef};

use crate::recovery::{
    Entry,
    gate::{self, Gate},
    log::RecoveryLog,
};
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

/// Sends `event` to `to`, cluster-wide, as any emit (nothing kept).
async fn broadcast<A: Adapter, T: Serialize + ?Sized>(
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

/// Sends `event` to `to`, cluster-wide. With recovery on (`log`), a recoverable event's part for a
/// driver's or a passenger's own room goes through the recovery log (recovery.md): kept under an
/// offset, published to every replica in order, and sent by each to its sockets' gates. If the
/// log cannot take it (Redis down), it is delivered without an offset as any emit, and the error
/// returned.
pub async fn send<A: Adapter, T: Serialize + ?Sized>(
    io: &SocketIo<A>,
    log: Option<&dyn RecoveryLog>,
    to: &Recipient,
    event: &str,
    data: &T,
) -> Result<Emitted, ClusterUnreachable> {
    let Some(log) = log.filter(|_| is_recoverable(event)) else {
        return broadcast(io, to, event, data).await;
    };
    let ns = to.namespace();
    let (kept, rest): (Vec<String>, Vec<String>) = to
        .rooms()
        .into_iter()
        .partition(|room| rooms::is_user_room(ns, room));
    if kept.is_empty() {
        return broadcast(io, to, event, data).await;
    }
    let value = serde_json::to_value(data).map_err(|e| ClusterUnreachable(e.to_string()))?;
    let mut outcome = Ok(Emitted::default());
    if !rest.is_empty() {
        let others = Recipient::RoomsExcept(ns, rest, kept.clone());
        outcome = broadcast(io, &others, event, data).await;
    }
    // Each room numbers its own events, so a push's rooms are kept at once: one script call
    // per shard (one in all on a single Redis), the data serialised once.
    let appended = log.append_all(ns, &kept, event, &value).await;
    for (room, appended) in kept.into_iter().zip(appended) {
        if let Err(error) = appended {
            metrics::redis_error("recovery_append");
            tracing::warn!(%error, event, "event not kept for recovery; sent without an offset");
            let _ = broadcast(io, &Recipient::Rooms(ns, vec![room]), event, data).await;
            outcome = Err(ClusterUnreachable(error.to_string()));
        }
    }
    outcome
}

/// Sends `event` to `to`'s sockets on this replica only, but not to those in `except` (a room):
/// for what every replica applies by itself (an auth event every replica hears). Returns how
/// many sockets it went to.
pub(super) async fn send_here<A: Adapter, T: Serialize + ?Sized>(
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

/// Hands an entry of `room` to the gates of this replica's sockets in it. The entry is made (and
/// `make` may skip it) only when there are some: with many replicas, most replicas hold no
/// socket of most rooms a push names.
pub(super) fn to_gates<A: Adapter>(
    io: &SocketIo<A>,
    ns: Namespace,
    room: &str,
    make: impl FnOnce() -> Option<Entry>,
) {
    let Some(op) = io.of(ns.path()) else { return };
    let sockets = op.local().within(room.to_owned()).sockets();
    if sockets.is_empty() {
        return;
    }
    let Some(entry) = make() else { return };
    metrics::emit(ns, &entry.event);
    for s in sockets {
        if let Some(gate) = s.extensions.get::<Arc<Gate>>() {
            gate.offer(&entry, |e| gate::send(&s, e));
        }
    }
}

/// How many of `to`'s sockets are on this replica, not counting those in `except`.
pub(super) fn count_here<A: Adapter>(
    io: &SocketIo<A>,
    to: &Recipient,
    except: Option<String>,
) -> usize {
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

/// The well-formed answers of `driver`'s sockets, cluster-wide, as they come within
/// `expires_in` (a socket's answer to [`offer`] sent now).
pub type OfferAnswers = Pin<Box<dyn Stream<Item = OfferAnswer> + Send>>;

/// Sends `offer` to every socket of `driver`, on whichever replica, with an acknowledgement;
/// the answers as they come within `expires_in`.
pub async fn offer<A: Adapter>(
    io: &SocketIo<A>,
    driver: &str,
    offer: &TripOffer,
    expires_in: Duration,
) -> Result<OfferAnswers, ClusterUnreachable> {
    let Some(op) = io.of(Namespace::Drivers.path()) else {
        return Ok(Box::pin(futures::stream::empty()));
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
    // offer's own deadline bounds the stream.
    let answers =
        stream.filter_map(|(_, answer)| std::future::ready(answer.ok().and_then(well_formed)));
    Ok(Box::pin(answers.take_until(tokio::time::sleep(expires_in))))
}

/// Sends `offer` to the socket at hand (re-delivery to a driver's socket that connected while
/// the offer was open); its well-formed answer within `within`.
pub fn offer_to<A: Adapter>(
    s: &SocketRef<A>,
    offer: &TripOffer,
    within: Duration,
) -> impl Future<Output = Option<OfferAnswer>> + Send + 'static {
    metrics::emit(Namespace::Drivers, TRIP_OFFER);
    let ack = s
        .timeout(within)
        .emit_with_ack::<_, Value>(TRIP_OFFER, offer);
    async move { ack.ok()?.await.ok().and_then(well_formed) }
}

/// `{ "accept": bool }`, also when the client acknowledged with it as one argument of a list.
fn well_formed(value: Value) -> Option<OfferAnswer> {
    let value = match value {
        Value::Array(mut items) if items.len() == 1 => items.remove(0),
        other => other,
    };
    serde_json::from_value(value).ok()
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
    use shared::events::{TRIP_DRIVER_LOCATION, TRIP_UPDATED};
    use socketioxide::extract::SocketRef;

    use crate::{config::RecoverySettings, recovery::log::MemoryLog};

    /// What `send` kept for recovery: the events the memory log fed to the replica.
    async fn kept_of(to: Recipient, event: &str) -> Vec<String> {
        let (_, io) = SocketIo::new_svc();
        for ns in Namespace::ALL {
            io.ns(ns.path(), async |_: SocketRef| {});
        }
        let (log, mut feed) = MemoryLog::new(RecoverySettings {
            window: Duration::from_secs(60),
            max_events: 10,
        });
        send(&io, Some(&log), &to, event, &json!({ "n": 1 }))
            .await
            .expect("a single replica delivers");
        let mut kept = Vec::new();
        while let Ok(entry) = feed.try_recv() {
            kept.push(format!("{} {}", entry.room, entry.event));
        }
        kept
    }

    #[tokio::test]
    async fn a_recoverable_event_to_a_user_room_is_kept_whoever_sends_it() {
        let passenger = || Recipient::Passenger("p1".into());
        assert_eq!(
            kept_of(passenger(), TRIP_UPDATED).await,
            ["passenger:p1 trip:updated"]
        );
        assert_eq!(
            kept_of(Recipient::Driver("d1".into()), "order:receipt").await,
            ["driver:d1 order:receipt"]
        );
        let rooms = vec!["passenger:p2".to_owned(), "trip:t1".to_owned()];
        assert_eq!(
            kept_of(Recipient::Rooms(Namespace::Passengers, rooms), TRIP_UPDATED).await,
            ["passenger:p2 trip:updated"],
            "only the user rooms of a push are kept"
        );
        assert!(kept_of(passenger(), TRIP_DRIVER_LOCATION).await.is_empty());
        assert!(kept_of(Recipient::Admins, TRIP_UPDATED).await.is_empty());
    }

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
