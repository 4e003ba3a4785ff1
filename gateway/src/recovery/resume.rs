//! A reconnecting socket's side of recovery: its gate before it joins its room, and the replay
//! of what it missed before `hello`.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use shared::{namespace::Namespace, rooms};
use socketioxide::{adapter::Adapter, extract::SocketRef};

use super::{
    Offset, UserRoom,
    gate::{self, Gate},
    log::{RecoveryLog, Resume},
};
use crate::telemetry::metrics;

/// What the client sent as `auth.offset`, kept from the handshake to the connect handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOffset {
    /// `""`: a client with no offset yet asks where it stands (docs/events.md). Not recovered,
    /// like any offset that is not one, but counted apart.
    Empty,
    Given(Offset),
    Malformed,
}

impl ClientOffset {
    /// `None` when the handshake's `auth` has no `offset`; a non-string offset is malformed.
    pub fn from_auth(auth: Option<&Value>) -> Option<Self> {
        let offset = auth?.get("offset")?;
        Some(match offset.as_str() {
            Some("") => Self::Empty,
            Some(text) => text.parse().map_or(Self::Malformed, Self::Given),
            None => Self::Malformed,
        })
    }

    fn offset(&self) -> Option<Offset> {
        match self {
            Self::Given(offset) => Some(*offset),
            Self::Empty | Self::Malformed => None,
        }
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

/// Gives the socket its gate, before it joins its room: holding when it will replay.
pub fn give_gate<A: Adapter>(s: &SocketRef<A>, replays: bool) {
    let gate = if replays {
        Gate::holding()
    } else {
        Gate::open()
    };
    s.extensions.insert(Arc::new(gate));
}

/// What a reconnecting socket replays. Read before its CONNECT is answered (to say whether it
/// recovered), then caught up once the socket is connected ([`Replay::catch_up`]): until then
/// the live feed cannot find the socket, so what was kept between the two reads comes from the
/// second one, and the gate, holding since before the first, drops what it has twice.
#[derive(Debug, Clone)]
pub struct Replay {
    room: UserRoom,
    from: ClientOffset,
    /// `None` when the log did not answer in time.
    resumed: Option<Resume>,
}

impl Replay {
    /// Whether the client's offset was still kept: what it missed is replayed.
    pub fn recovered(&self) -> bool {
        self.resumed.as_ref().is_some_and(|r| r.missed.is_some())
    }
}

/// Reads what `room` received after the client's offset (the socket already holds its gate
/// and is in the room).
pub async fn read<A: Adapter>(
    s: &SocketRef<A>,
    log: &dyn RecoveryLog,
    room: &UserRoom,
    from: ClientOffset,
) -> Replay {
    let resumed = resume_within_bound(s, log, room, from.offset()).await;
    Replay {
        room: room.clone(),
        from,
        resumed,
    }
}

/// The log's answer within [`REPLAY_BOUND`]; `None` (counted, logged) when it has none.
async fn resume_within_bound<A: Adapter>(
    s: &SocketRef<A>,
    log: &dyn RecoveryLog,
    room: &UserRoom,
    from: Option<Offset>,
) -> Option<Resume> {
    match tokio::time::timeout(REPLAY_BOUND, log.resume(room, from)).await {
        Ok(Ok(resumed)) => Some(resumed),
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
    }
}

impl Replay {
    /// Adds what was kept since the first read (the socket is connected now: the live feed
    /// reaches its gate from here on). A socket that did not recover needs nothing more.
    pub async fn catch_up<A: Adapter>(mut self, s: &SocketRef<A>, log: &dyn RecoveryLog) -> Self {
        let Some(Resume {
            missed: Some(missed),
            head,
        }) = &self.resumed
        else {
            return self;
        };
        let after = missed.last().map(|e| e.offset).or(self.from.offset());
        let later = resume_within_bound(s, log, &self.room, after).await;
        if let Some(Resume {
            missed: Some(later),
            head: later_head,
        }) = later
        {
            let head = (*head).max(later_head);
            if let Some(resumed) = &mut self.resumed {
                resumed.missed.get_or_insert_with(Vec::new).extend(later);
                resumed.head = head;
            }
        }
        self
    }
}

/// Sends what was missed, then what arrived meanwhile, then `greet`s (`hello`) and opens the
/// gate. `greet` is told whether the client's offset was still kept (`hello.recovered`) and
/// the offset the client stands at now (`hello.offset`: `None` when the log did not answer),
/// before any later event can reach the socket.
pub fn finish<A: Adapter>(
    s: &SocketRef<A>,
    replay: Replay,
    greet: impl FnOnce(bool, Option<Offset>),
) {
    let Some(gate) = s.extensions.get::<Arc<Gate>>() else {
        return greet(false, None);
    };
    let recovered = replay.recovered();
    let (missed, head) = replay
        .resumed
        .map_or((None, None), |r| (r.missed, Some(r.head)));
    let replayed = missed.as_ref().map_or(0, Vec::len);
    gate.finish(
        missed.unwrap_or_default(),
        |entry| gate::send(s, entry),
        // Sent entries and the head alike: the newer.
        |last| {
            greet(
                recovered,
                head.map(|head| last.map_or(head, |l| l.max(head))),
            )
        },
    );
    metrics::recovery(
        replay.room.ns,
        recovered,
        replay.from == ClientOffset::Empty,
        replayed,
    );
    tracing::debug!(socket = %s.id, recovered, replayed, "replayed missed events");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn auth_offsets_are_given_empty_malformed_or_absent() {
        let read = |auth: Value| ClientOffset::from_auth(Some(&auth));
        assert_eq!(
            read(json!({ "offset": "17-2" })),
            Some(ClientOffset::Given(Offset { ms: 17, seq: 2 }))
        );
        assert_eq!(read(json!({ "offset": "" })), Some(ClientOffset::Empty));
        for bad in [json!("x-1"), json!(42), json!(null), json!({})] {
            assert_eq!(
                read(json!({ "offset": bad })),
                Some(ClientOffset::Malformed)
            );
        }
        assert_eq!(read(json!({ "token": "t" })), None);
        assert_eq!(ClientOffset::from_auth(None), None);
    }
}
