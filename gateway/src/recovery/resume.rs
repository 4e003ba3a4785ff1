//! A reconnecting socket's side of recovery: its gate before it joins its room, and the replay
//! of what it missed before `hello`.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use shared::{namespace::Namespace, rooms};
use socketioxide::{adapter::Adapter, extract::SocketRef};

use super::{
    Offset, UserRoom,
    gate::{self, Gate},
    log::RecoveryLog,
    offset::Malformed,
};
use crate::telemetry::metrics;

/// What the client sent as `auth.offset`, kept from the handshake to the connect handler.
#[derive(Debug, Clone)]
pub struct ClientOffset(pub Result<Offset, Malformed>);

impl ClientOffset {
    /// `None` when the handshake's `auth` has no `offset`; a non-string offset is malformed.
    pub fn from_auth(auth: Option<&Value>) -> Option<Self> {
        let offset = auth?.get("offset")?;
        Some(Self(offset.as_str().ok_or(Malformed).and_then(str::parse)))
    }
}

/// The room a user's recoverable events are kept in, for the namespaces that have one.
pub fn user_room(ns: Namespace, user_id: &str) -> Option<UserRoom> {
    let room = match ns {
        Namespace::Drivers => rooms::driver(user_id),
        Namespace::Passengers => rooms::passenger(user_id),
        Namespace::Admin => return None,
    };
    Some(UserRoom { ns, room })
}

/// How long a replay may wait for the log (Redis slow or down: the handshake goes on, not
/// recovered).
const REPLAY_BOUND: Duration = Duration::from_millis(1000);

/// Gives the socket its gate, before it joins its room: holding when it will replay. Returns
/// the offset to replay from, when there is one to try.
pub fn admit<A: Adapter>(s: &SocketRef<A>, enabled: bool) -> Option<ClientOffset> {
    let wanted = s.extensions.remove::<ClientOffset>().filter(|_| enabled);
    let gate = if wanted.is_some() {
        Gate::holding()
    } else {
        Gate::open()
    };
    s.extensions.insert(Arc::new(gate));
    wanted
}

/// Sends what `room` received after the client's offset, then what arrived meanwhile, and opens
/// the gate. Returns whether the client's offset was still kept (`hello.recovered`).
pub async fn replay<A: Adapter>(
    s: &SocketRef<A>,
    log: &dyn RecoveryLog,
    room: &UserRoom,
    from: ClientOffset,
) -> bool {
    let Some(gate) = s.extensions.get::<Arc<Gate>>() else {
        return false;
    };
    let missed = match from.0 {
        Err(Malformed) => None,
        Ok(offset) => match tokio::time::timeout(REPLAY_BOUND, log.after(room, offset)).await {
            Ok(Ok(missed)) => missed,
            Ok(Err(error)) => {
                metrics::redis_error("recovery_replay");
                tracing::warn!(%error, socket = %s.id, "replay unavailable: not recovered");
                None
            }
            Err(_) => {
                metrics::redis_error("recovery_replay");
                tracing::warn!(socket = %s.id, "replay timed out: not recovered");
                None
            }
        },
    };
    let recovered = missed.is_some();
    let replayed = missed.as_ref().map_or(0, Vec::len);
    gate.finish(missed.unwrap_or_default(), |entry| gate::send(s, entry));
    metrics::recovery(room.ns, recovered, replayed);
    tracing::debug!(socket = %s.id, recovered, replayed, "replayed missed events");
    recovered
}
