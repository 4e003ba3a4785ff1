//! Missed-event recovery (`docs/spec/recovery.md`): recoverable events to one user's room
//! are kept with an offset for `RECOVERY_WINDOW_MS` (at most `RECOVERY_MAX_EVENTS` per room), and
//! reach sockets through a per-socket [`gate::Gate`], so that a client reconnecting with its
//! last offset gets what it missed before `hello`, on any replica, exactly once and in order.
//!
//! - [`log`]: where events are kept (a capped, expiring stream per room in Redis; a ring per room
//!   in memory) and how each replica hears of them (the append publishes them, in order);
//! - [`gate`]: what each local socket receives of them, including during its replay.
//!
//! Not recoverable, hence not here: locations, offers, admin events, `hello`, expiry notices.

pub mod gate;
pub mod log;
pub mod offset;
pub mod pid;
pub mod resume;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::namespace::Namespace;

pub use offset::Offset;

/// A user's own room, the unit events are kept and numbered in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserRoom {
    pub ns: Namespace,
    /// `driver:{id}` or `passenger:{id}` (`shared::rooms`).
    pub room: String,
}

/// One kept event, as replicas pass it to each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The namespace's path.
    pub ns: String,
    pub room: String,
    pub event: String,
    pub data: Value,
    pub offset: Offset,
}

impl Entry {
    pub fn namespace(&self) -> Option<Namespace> {
        Namespace::from_path(&self.ns)
    }
}

/// What one append publishes to every replica (`recovery_append.lua`): an event kept for rooms
/// of one shard, each under its own offset, its data carried once. Or a replica's own marker
/// (`{"sync": "..."}`, nothing kept): heard back, it proves the replica's subscription delivers.
#[derive(Debug, Deserialize)]
pub struct Published {
    #[serde(default)]
    pub ns: String,
    #[serde(default)]
    pub event: String,
    /// The rooms, in the order kept, with their offsets.
    #[serde(default)]
    pub kept: Vec<(String, Offset)>,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub sync: Option<String>,
}

impl Published {
    /// The entry of one of the rooms kept.
    pub fn entry(&self, room: &str, offset: Offset) -> Entry {
        Entry {
            ns: self.ns.clone(),
            room: room.to_owned(),
            event: self.event.clone(),
            data: self.data.clone(),
            offset,
        }
    }
}
