//! A reconnecting socket's side of recovery: its gate before it joins its room, and the replay
//! of what it missed before `hello`.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use shared::{namespace::Namespace, rooms};
use socketioxide::{adapter::Adapter, extract::SocketRef};

use super::{
    Entry, Offset, UserRoom,
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

    pub fn offset(&self) -> Option<Offset> {
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

/// Where a socket of a user room starts: what it missed when it asked, and the room's head, so
/// that `hello` tells every socket where it stands (and a hole in the feed later can be caught
/// up from there, `realtime::resync`). Read before its CONNECT is answered (to say whether it
/// recovered), then caught up once the socket is connected ([`Replay::catch_up`]): until then
/// the live feed cannot find the socket, so what was kept between the two reads comes from the
/// second one, and the gate, holding since before the first, drops what it has twice.
#[derive(Debug, Clone)]
pub struct Replay {
    room: UserRoom,
    /// What the client asked to resume from; `None` on a first connection.
    asked: Option<ClientOffset>,
    /// Whether that offset was still kept.
    recovered: bool,
    /// What to send before `hello`, oldest first.
    missed: Vec<Entry>,
    /// Every entry not in `missed` comes after it; `None` when the log did not answer.
    head: Option<Offset>,
    /// Entries kept between the two reads could not be read: the socket must not stay.
    lost: bool,
}

impl Replay {
    /// Whether the client's offset was still kept: what it missed is replayed.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// Where the socket stands once its replay is sent (`None`: the log did not answer).
    pub fn head(&self) -> Option<Offset> {
        self.head
    }

    /// Whether what was kept for the socket since the first read could not be read.
    pub fn lost(&self) -> bool {
        self.lost
    }
}

/// Reads what `room` received after the offset the client `asked` for, if any, and where it
/// stands (the socket already holds its gate and is in the room).
pub async fn read<A: Adapter>(
    s: &SocketRef<A>,
    log: &dyn RecoveryLog,
    room: &UserRoom,
    asked: Option<ClientOffset>,
) -> Replay {
    let from = asked.as_ref().and_then(ClientOffset::offset);
    let resumed = read_within_bound(s, log, room, from, None).await;
    let (missed, head) = resumed.map_or((None, None), |r| (r.missed, Some(r.head)));
    Replay {
        room: room.clone(),
        asked,
        recovered: missed.is_some(),
        missed: missed.unwrap_or_default(),
        head,
        lost: false,
    }
}

/// The log's answer within [`REPLAY_BOUND`] ([`RecoveryLog::read`]); `None` (counted, logged)
/// when it has none.
pub async fn read_within_bound<A: Adapter>(
    s: &SocketRef<A>,
    log: &dyn RecoveryLog,
    room: &UserRoom,
    from: Option<Offset>,
    lookback: Option<Duration>,
) -> Option<Resume> {
    match tokio::time::timeout(REPLAY_BOUND, log.read(room, from, lookback)).await {
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
    /// reaches its gate from here on). A socket the log did not answer for has nothing to add.
    pub async fn catch_up<A: Adapter>(mut self, s: &SocketRef<A>, log: &dyn RecoveryLog) -> Self {
        let Some(head) = self.head else {
            return self;
        };
        match read_within_bound(s, log, &self.room, Some(head), None).await {
            Some(Resume {
                missed: Some(later),
                head: later_head,
            }) => {
                self.missed.extend(later);
                self.head = Some(head.max(later_head));
            }
            // Trimmed or gone between the two reads, or the log stopped answering.
            _ => self.lost = true,
        }
        self
    }
}

/// Sends what was missed, then what arrived meanwhile, then `greet`s (`hello`) and opens the
/// gate. `greet` is told whether the client's offset was still kept (`hello.recovered`) and the
/// offset the client stands at now (`hello.offset`: `None` when the log did not answer), before
/// any later event can reach the socket; both `None` for a client that asked for nothing, whose
/// `hello` stays the contract's (the gate knows where it stands all the same).
pub fn finish<A: Adapter>(
    s: &SocketRef<A>,
    replay: Replay,
    greet: impl FnOnce(Option<bool>, Option<Offset>),
) {
    let Some(gate) = s.extensions.get::<Arc<Gate>>() else {
        return greet(None, None);
    };
    let recovered = replay.asked.is_some().then_some(replay.recovered);
    let replayed = replay.missed.len();
    gate.finish(
        replay.missed,
        replay.head,
        |entry| gate::send(s, entry),
        |stands_at| greet(recovered, stands_at.filter(|_| recovered.is_some())),
    );
    if let Some(asked) = &replay.asked {
        metrics::recovery(
            replay.room.ns,
            replay.recovered,
            *asked == ClientOffset::Empty,
            replayed,
        );
    }
    tracing::debug!(socket = %s.id, ?recovered, replayed, "replayed missed events");
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
