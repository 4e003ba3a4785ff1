//! What each local socket receives of the recoverable events: every entry of its room once, in
//! offset order, including while it replays what it missed.
//!
//! A socket that reconnects with an offset joins its room *holding*: entries arriving meanwhile
//! are held, not sent. It then replays the log after its offset, and [`Gate::finish`] sends the
//! replay and the held entries newer than the replay's last, in order, and opens. From then on
//! an entry goes out only if it is newer than the last one this socket got. So an event is either
//! replayed or delivered live, once, whatever the interleaving (recovery.md).

use std::sync::Mutex;

use socketioxide::{SendError, SocketError, adapter::Adapter, extract::SocketRef};

use super::{Entry, Offset};
use crate::telemetry::metrics;

/// Per socket, in its extensions.
#[derive(Debug, Default)]
pub struct Gate(Mutex<GateState>);

#[derive(Debug, Default)]
struct GateState {
    /// The newest offset this socket was sent.
    last: Option<Offset>,
    /// While replaying: what arrived meanwhile.
    held: Option<Vec<Entry>>,
}

impl Gate {
    /// For a socket that has nothing to replay.
    pub fn open() -> Self {
        Self::default()
    }

    /// For a socket about to replay: live entries wait for [`Gate::finish`].
    pub fn holding() -> Self {
        Self(Mutex::new(GateState {
            last: None,
            held: Some(Vec::new()),
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
    /// the newest offset sent), and opens: nothing live goes out between the last of these and
    /// `then`, so `hello` can tell the client where it stands.
    pub fn finish(
        &self,
        replayed: Vec<Entry>,
        mut send: impl FnMut(&Entry),
        then: impl FnOnce(Option<Offset>),
    ) {
        let mut state = self.lock();
        let mut held = state.held.take().unwrap_or_default();
        held.sort_by_key(|e| e.offset);
        for entry in replayed.iter().chain(held.iter()) {
            if state.last.is_none_or(|last| entry.offset > last) {
                state.last = Some(entry.offset);
                send(entry);
            }
        }
        then(state.last);
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
        gate.finish(Vec::new(), |e| out.push(e.offset.ms), |_| {});
        assert_eq!(out, [8, 9]);
    }
}
