//! What each local socket receives of the recoverable events: every entry of its room once, in
//! offset order, including while it replays what it missed.
//!
//! A socket that reconnects with an offset joins its room *holding*: entries arriving meanwhile
//! are held, not sent. It then replays the log after its offset, and [`Gate::finish`] sends the
//! replay and the held entries newer than the replay's last, in order, and opens. From then on
//! an entry goes out only if it is newer than where the socket stands (the last one it got, or
//! the position `hello` gave it). So an event is either replayed or delivered live, once,
//! whatever the interleaving (recovery.md).
//!
//! When the feed itself had a hole (Redis restarted, the listener fell behind), the same gate
//! holds again ([`Gate::hold`]) while the socket catches up from where it stands
//! (`realtime::resync`).

use std::sync::Mutex;

use socketioxide::{SendError, SocketError, adapter::Adapter, extract::SocketRef};

use super::{Entry, Offset};
use crate::telemetry::metrics;

/// Per socket, in its extensions.
#[derive(Debug, Default)]
pub struct Gate(Mutex<GateState>);

#[derive(Debug, Default)]
struct GateState {
    /// Where this socket stands: the newest offset it was sent, or the position it was told.
    last: Option<Offset>,
    /// While replaying: what arrived meanwhile.
    held: Option<Vec<Entry>>,
    /// Holding for a catch-up after a hole in the feed, not for the socket's first replay.
    resyncing: bool,
}

/// What [`Gate::hold`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Holding now; the socket catches up after this offset.
    From(Offset),
    /// Holding now, but the socket was never told where it stands (the log did not answer when
    /// it connected): what it missed cannot be named.
    Nowhere,
    /// Its first replay is still under way (it connected just now): that replay covers it.
    Replaying,
}

impl Gate {
    /// For a socket that has nothing to replay.
    pub fn open() -> Self {
        Self::default()
    }

    /// For a socket about to replay: live entries wait for [`Gate::finish`].
    pub fn holding() -> Self {
        Self(Mutex::new(GateState {
            held: Some(Vec::new()),
            ..GateState::default()
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A live entry: sent now, held, or dropped as already sent.
    pub fn offer(&self, entry: &Entry, send: impl FnOnce(&Entry)) {
        let mut state = self.lock();
        if let Some(held) = &mut state.held {
            held.push(entry.clone());
        } else if state.last.is_none_or(|last| entry.offset > last) {
            state.last = Some(entry.offset);
            send(entry);
        }
    }

    /// Sends `replayed` (oldest first), then what was held and is newer, then `then` (given
    /// where the socket stands: the newest offset sent, or `head` when newer), and opens:
    /// nothing live goes out between the last of these and `then`, so `hello` can tell the
    /// client where it stands. `head`: every entry not replayed comes after it.
    pub fn finish(
        &self,
        replayed: Vec<Entry>,
        head: Option<Offset>,
        mut send: impl FnMut(&Entry),
        then: impl FnOnce(Option<Offset>),
    ) {
        let mut state = self.lock();
        let mut held = state.held.take().unwrap_or_default();
        state.resyncing = false;
        held.sort_by_key(|e| e.offset);
        for entry in replayed.iter().chain(held.iter()) {
            if state.last.is_none_or(|last| entry.offset > last) {
                state.last = Some(entry.offset);
                send(entry);
            }
        }
        state.last = state.last.max(head);
        then(state.last);
    }

    /// Holds live entries again, for a catch-up after a hole in the feed: where the socket
    /// stands. Held entries wait for [`Gate::finish`] as during a first replay.
    pub fn hold(&self) -> Held {
        let mut state = self.lock();
        if state.held.is_some() && !state.resyncing {
            return Held::Replaying;
        }
        state.held.get_or_insert_with(Vec::new);
        state.resyncing = true;
        state.last.map_or(Held::Nowhere, Held::From)
    }
}

/// Sends an entry on a socket, its offset as the last argument.
pub fn send<A: Adapter>(s: &SocketRef<A>, entry: &Entry) {
    let offset = entry.offset.to_string();
    match s.emit(entry.event.as_str(), &(&entry.data, offset)) {
        Ok(()) => {}
        Err(SendError::Socket(SocketError::InternalChannelFull)) => {
            // As for any emit: the transport is closed, the client reconnects and recovers.
            if let Some(ns) = entry.namespace() {
                metrics::emits_dropped(ns, 1);
            }
        }
        Err(error) => tracing::debug!(socket = %s.id, %error, "recoverable event not sent"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(ms: u64) -> Entry {
        Entry {
            ns: "/passengers".into(),
            room: "passenger:p1".into(),
            event: "trip:updated".into(),
            data: json!({"n": ms}),
            offset: Offset { ms, seq: 0 },
        }
    }

    fn sent(gate: &Gate, live: &[u64], replay: Option<&[u64]>) -> Vec<u64> {
        let mut out = Vec::new();
        for &ms in live {
            gate.offer(&entry(ms), |e| out.push(e.offset.ms));
        }
        if let Some(replay) = replay {
            gate.finish(
                replay.iter().map(|&ms| entry(ms)).collect(),
                None,
                |e| out.push(e.offset.ms),
                |_| {},
            );
        }
        out
    }

    #[test]
    fn an_open_gate_sends_each_entry_once_in_order() {
        assert_eq!(sent(&Gate::open(), &[1, 2, 2, 1, 3], None), [1, 2, 3]);
    }

    #[test]
    fn a_holding_gate_sends_nothing_until_its_replay_is_done() {
        let gate = Gate::holding();
        assert!(sent(&gate, &[5, 6], None).is_empty());
        // Replayed 3..=5 (5 was also heard live): 3, 4, 5 from the replay, then 6 held.
        let mut out = Vec::new();
        let mut newest = None;
        gate.finish(
            vec![entry(3), entry(4), entry(5)],
            None,
            |e| out.push(e.offset.ms),
            |last| newest = last.map(|o| o.ms),
        );
        assert_eq!(out, [3, 4, 5, 6]);
        assert_eq!(newest, Some(6), "then is told the newest sent");
        assert_eq!(sent(&gate, &[6, 7], None), [7]);
    }

    #[test]
    fn held_entries_go_in_offset_order_after_an_empty_replay() {
        let gate = Gate::holding();
        sent(&gate, &[9, 8], None);
        let mut out = Vec::new();
        gate.finish(Vec::new(), None, |e| out.push(e.offset.ms), |_| {});
        assert_eq!(out, [8, 9]);
    }

    #[test]
    fn a_socket_stands_at_its_head_when_nothing_newer_was_sent() {
        let gate = Gate::holding();
        let mut stands = None;
        gate.finish(Vec::new(), Some(entry(4).offset), |_| {}, |at| stands = at);
        assert_eq!(stands.map(|o| o.ms), Some(4));
        assert_eq!(
            sent(&gate, &[3, 4, 5], None),
            [5],
            "only what follows the head"
        );
    }

    #[test]
    fn a_hole_in_the_feed_is_caught_up_from_where_the_socket_stands() {
        let gate = Gate::open();
        assert_eq!(sent(&gate, &[1, 2], None), [1, 2]);
        assert_eq!(gate.hold(), Held::From(entry(2).offset));
        assert_eq!(
            gate.hold(),
            Held::From(entry(2).offset),
            "held once, told twice"
        );
        // 3 and 4 were lost with the subscription; 5 and 6 arrive once it is back.
        assert!(
            sent(&gate, &[5, 6], None).is_empty(),
            "held during the catch-up"
        );
        let mut out = Vec::new();
        gate.finish(
            vec![entry(3), entry(4), entry(5)],
            None,
            |e| out.push(e.offset.ms),
            |_| {},
        );
        assert_eq!(out, [3, 4, 5, 6]);
        assert_eq!(sent(&gate, &[6, 7], None), [7]);
    }

    #[test]
    fn a_socket_in_its_first_replay_or_never_placed_is_told_so() {
        assert_eq!(Gate::holding().hold(), Held::Replaying);
        assert_eq!(Gate::open().hold(), Held::Nowhere);
    }
}
