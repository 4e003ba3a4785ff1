//! Where recoverable events are kept, and how every replica hears of them in order.
//!
//! Appending assigns the offset and publishes the entry in one step: Redis runs one script that
//! appends to the room's stream and publishes on the room's shard channel (every replica is
//! subscribed to all of them); the memory log assigns, keeps and queues under one lock. Each
//! replica then hands the entries, in that order, to its sockets' gates (`realtime::feed`).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use fred::{clients::Client, interfaces::ClientLike, types::Value as RedisValue};
use serde_json::Value;
use shared::namespace::Namespace;
use tokio::sync::mpsc;

use super::{Entry, Offset, UserRoom, offset::room_mark};
use crate::{
    clock::now_ms,
    config::RecoverySettings,
    state::{
        StateError,
        keys::{Keys, room_shard},
        script::{Named, in_slots},
    },
};

#[async_trait]
pub trait RecoveryLog: Send + Sync {
    /// Keeps `event` for each of `rooms` (user rooms of `ns`) under a new offset per room and
    /// publishes it to every replica: one step per shard, the event serialised once. Answers
    /// per room, in the order given.
    async fn append_all(
        &self,
        ns: Namespace,
        rooms: &[String],
        event: &str,
        data: &Value,
    ) -> Vec<Result<Offset, StateError>>;

    /// [`RecoveryLog::append_all`] for one room.
    async fn append(
        &self,
        room: &UserRoom,
        event: &str,
        data: &Value,
    ) -> Result<Offset, StateError> {
        let rooms = [room.room.clone()];
        let mut kept = self.append_all(room.ns, &rooms, event, data).await;
        kept.pop()
            .unwrap_or_else(|| Err(StateError::Data("nothing kept for the room".into())))
    }

    /// As [`RecoveryLog::append`], unless an event was already kept for `room` under `once`
    /// within the window (then `None`): for events every replica hears and handles.
    async fn append_once(
        &self,
        room: &UserRoom,
        once: &str,
        event: &str,
        data: &Value,
    ) -> Result<Option<Offset>, StateError>;

    /// Where a socket of `room` resumes: what the room received after the client's offset
    /// `from`, oldest first, when that offset is still kept; and the room's position now.
    async fn resume(&self, room: &UserRoom, from: Option<Offset>) -> Result<Resume, StateError> {
        self.read(room, from, None).await
    }

    /// Where a socket still connected catches up after a hole in the feed that began at most
    /// `lookback` ago: as [`RecoveryLog::resume`] from `from`, except that an offset older than
    /// the hole resumes from the room's position `lookback` ago (everything before the hole
    /// reached the socket, so an offset that old only means the room was quiet since).
    async fn catch_up(
        &self,
        room: &UserRoom,
        from: Offset,
        lookback: Duration,
    ) -> Result<Resume, StateError> {
        self.read(room, Some(from), Some(lookback)).await
    }

    /// [`RecoveryLog::resume`], or [`RecoveryLog::catch_up`] with a `lookback`.
    async fn read(
        &self,
        room: &UserRoom,
        from: Option<Offset>,
        lookback: Option<Duration>,
    ) -> Result<Resume, StateError>;
}

/// The offset a catch-up reads after: `from`, or the room's position at `now_ms - lookback` when
/// `from` is older (both logs).
pub fn catch_up_from(room: &str, from: Offset, now_ms: u64, lookback: Option<Duration>) -> Offset {
    let Some(lookback) = lookback else {
        return from;
    };
    let floor = now_ms.saturating_sub(lookback.as_millis() as u64);
    if from.ms < floor {
        Offset {
            ms: floor,
            seq: room_mark(room),
        }
    } else {
        from
    }
}

/// What [`RecoveryLog::resume`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// `None` when the offset is not kept (expired, trimmed, never given for this room, or none).
    pub missed: Option<Vec<Entry>>,
    /// Every event the room receives from now on comes after this offset: its newest entry, or
    /// a position ([`Offset::position`]) when it has none.
    pub head: Offset,
}

/// Whether a position given for a room is still good, the same for both logs: given for this
/// room, by this log (not before `since_ms`, when it started keeping), within the window (an
/// entry kept after it would have expired by now), and nothing after it trimmed (`trimmed`).
pub fn position_kept(
    room: &str,
    position: Offset,
    since_ms: u64,
    now_ms: u64,
    window_ms: u64,
    trimmed: bool,
) -> bool {
    position.is_position_of(room)
        && position.ms + 1 >= since_ms
        && position.ms < now_ms
        && now_ms - position.ms < window_ms
        && !trimmed
}

/// A single replica's log: a ring per room, trimmed by count and age as it is used, rooms with
/// nothing left reaped every few thousand appends.
pub struct MemoryLog {
    settings: RecoverySettings,
    inner: Mutex<Rings>,
    feed: mpsc::UnboundedSender<Entry>,
}

struct Rings {
    rooms: HashMap<String, Ring>,
    /// Once-markers (`append_once`), by room and key, with when they lapse (ms).
    once: HashMap<(String, String), u64>,
    last: Option<Offset>,
    appends: u64,
    /// When this log started keeping (ms): positions given before were another log's.
    since_ms: u64,
}

#[derive(Default)]
struct Ring {
    entries: VecDeque<Entry>,
    /// The newest entry trimmed away.
    trimmed: Option<Offset>,
}

impl Ring {
    fn trim(&mut self, max: usize, oldest_ms: u64) {
        while self.entries.len() > max
            || self
                .entries
                .front()
                .is_some_and(|e| e.offset.ms < oldest_ms)
        {
            self.trimmed = self.entries.pop_front().map(|e| e.offset);
        }
    }
}

/// Rooms are reaped once per this many appends.
const REAP_EVERY: u64 = 4096;

impl MemoryLog {
    /// The log and the feed of its entries, in offset order.
    pub fn new(settings: RecoverySettings) -> (Self, mpsc::UnboundedReceiver<Entry>) {
        let (feed, entries) = mpsc::unbounded_channel();
        let log = Self {
            settings,
            inner: Mutex::new(Rings {
                rooms: HashMap::new(),
                once: HashMap::new(),
                last: None,
                appends: 0,
                since_ms: now_ms(),
            }),
            feed,
        };
        (log, entries)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rings> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn expired_before(&self, now: u64) -> u64 {
        now.saturating_sub(self.settings.window.as_millis() as u64)
    }

    /// Rooms kept in memory (tests of the reaping).
    pub fn rooms(&self) -> usize {
        self.lock().rooms.len()
    }
}

impl MemoryLog {
    /// Keeps one room's event under the lock, and queues it on the feed.
    fn keep(
        &self,
        rings: &mut Rings,
        room: &UserRoom,
        event: &str,
        data: &Value,
    ) -> Result<Offset, StateError> {
        // The clock is read under the lock, as in `resume`: a position read there comes before
        // every offset given after it.
        let now = now_ms();
        let oldest = self.expired_before(now);
        let offset = rings
            .last
            .map_or(Offset { ms: now, seq: 0 }, |o| o.next(now));
        rings.last = Some(offset);
        let entry = Entry {
            ns: room.ns.path().to_owned(),
            room: room.room.clone(),
            event: event.to_owned(),
            data: data.clone(),
            offset,
        };
        let ring = rings.rooms.entry(room.room.clone()).or_default();
        ring.entries.push_back(entry.clone());
        ring.trim(self.settings.max_events, oldest);
        rings.appends += 1;
        if rings.appends.is_multiple_of(REAP_EVERY) {
            // A reaped room's entries all expired: a position before them is out of the window.
            rings.rooms.retain(|_, ring| {
                ring.trim(usize::MAX, oldest);
                !ring.entries.is_empty()
            });
            rings.once.retain(|_, lapses| *lapses > now);
        }
        // Under the lock: the feed carries entries in offset order.
        self.feed
            .send(entry)
            .map_err(|_| StateError::Stopped("the recovery feed stopped"))?;
        Ok(offset)
    }
}

#[async_trait]
impl RecoveryLog for MemoryLog {
    async fn append_all(
        &self,
        ns: Namespace,
        rooms: &[String],
        event: &str,
        data: &Value,
    ) -> Vec<Result<Offset, StateError>> {
        let mut rings = self.lock();
        rooms
            .iter()
            .map(|room| {
                let room = UserRoom {
                    ns,
                    room: room.clone(),
                };
                self.keep(&mut rings, &room, event, data)
            })
            .collect()
    }

    async fn append_once(
        &self,
        room: &UserRoom,
        once: &str,
        event: &str,
        data: &Value,
    ) -> Result<Option<Offset>, StateError> {
        let mut rings = self.lock();
        let now = now_ms();
        let key = (room.room.clone(), once.to_owned());
        if rings.once.get(&key).is_some_and(|lapses| *lapses > now) {
            return Ok(None);
        }
        let lapses = now + self.settings.window.as_millis() as u64;
        rings.once.insert(key, lapses);
        self.keep(&mut rings, room, event, data).map(Some)
    }

    async fn read(
        &self,
        room: &UserRoom,
        from: Option<Offset>,
        lookback: Option<Duration>,
    ) -> Result<Resume, StateError> {
        let mut rings = self.lock();
        let now = now_ms();
        let from = from.map(|from| catch_up_from(&room.room, from, now, lookback));
        let oldest = self.expired_before(now);
        let since_ms = rings.since_ms;
        let window_ms = self.settings.window.as_millis() as u64;
        let empty = Ring::default();
        let ring = match rings.rooms.get_mut(&room.room) {
            Some(ring) => {
                ring.trim(self.settings.max_events, oldest);
                &*ring
            }
            None => &empty,
        };
        let after = |from: Offset| -> Vec<Entry> {
            ring.entries
                .iter()
                .filter(|e| e.offset > from)
                .cloned()
                .collect()
        };
        let missed = from.and_then(|from| {
            let entry = ring.entries.iter().any(|e| e.offset == from);
            let trimmed = ring.trimmed.is_some_and(|t| t > from);
            (entry || position_kept(&room.room, from, since_ms, now, window_ms, trimmed))
                .then(|| after(from))
        });
        let head = ring
            .entries
            .back()
            .map_or_else(|| Offset::position(&room.room, now), |e| e.offset);
        Ok(Resume { missed, head })
    }
}

/// The cluster's log: a capped, expiring stream per room, published on the room's shard channel
/// by the same script.
pub struct RedisLog {
    client: Client,
    keys: Keys,
    settings: RecoverySettings,
    append: Named,
    resume: Named,
}

impl RedisLog {
    pub fn new(client: Client, keys: Keys, settings: RecoverySettings) -> Self {
        Self {
            client,
            keys,
            settings,
            append: Named::new("recovery_append", include_str!("lua/recovery_append.lua")),
            resume: Named::new("recovery_resume", include_str!("lua/recovery_resume.lua")),
        }
    }
}

impl RedisLog {
    /// Appends (and publishes) `event` for each room, except rooms where `once` was already
    /// marked: one script call per shard of the rooms (one call in all on a single Redis).
    async fn keep(
        &self,
        ns: Namespace,
        rooms: &[String],
        once: Option<&str>,
        event: &str,
        data: &Value,
    ) -> Vec<Result<Option<Offset>, StateError>> {
        let json = match serde_json::to_string(data) {
            Ok(json) => json,
            Err(e) => return vec![Err(StateError::Data(e.to_string())); rooms.len()],
        };
        let indexed: Vec<(usize, &String)> = rooms.iter().enumerate().collect();
        let groups = in_slots(self.client.is_clustered(), indexed, |(_, room)| {
            room_shard(room)
        });
        let calls = groups.into_iter().map(|group| {
            let json = &json;
            async move {
                let in_slot: Vec<&String> = group.iter().map(|(_, room)| *room).collect();
                let answers = self.keep_in_one_slot(ns, &in_slot, once, event, json).await;
                group.into_iter().map(|(i, _)| i).zip(answers)
            }
        });
        let mut kept: Vec<(usize, Result<Option<Offset>, StateError>)> =
            futures::future::join_all(calls)
                .await
                .into_iter()
                .flatten()
                .collect();
        kept.sort_by_key(|(i, _)| *i);
        kept.into_iter().map(|(_, answer)| answer).collect()
    }

    /// One script call for rooms whose streams share a slot; the channel is the first room's
    /// (on a single Redis every channel reaches a replica on its one subscriber connection, in
    /// the order published).
    async fn keep_in_one_slot(
        &self,
        ns: Namespace,
        rooms: &[&String],
        once: Option<&str>,
        event: &str,
        json: &str,
    ) -> Vec<Result<Option<Offset>, StateError>> {
        let Some(first) = rooms.first() else {
            return Vec::new();
        };
        let mut keys: Vec<String> = rooms.iter().map(|r| self.keys.recovery_stream(r)).collect();
        keys.extend(
            rooms
                .iter()
                .map(|r| self.keys.recovery_since(room_shard(r))),
        );
        if let Some(once) = once {
            keys.extend(rooms.iter().map(|r| self.keys.recovery_once(r, once)));
        }
        let mut args = vec![
            self.settings.max_events.to_string(),
            self.settings.window.as_millis().to_string(),
            self.keys.recovery_channel(room_shard(first)),
            ns.path().to_owned(),
            event.to_owned(),
            json.to_owned(),
        ];
        args.extend(rooms.iter().map(|r| (*r).clone()));
        match self.append.run(&self.client, keys, args).await {
            Ok(reply) => {
                let ids = reply.into_array();
                if ids.len() == rooms.len() {
                    ids.into_iter().map(offset_or_once).collect()
                } else {
                    vec![Err(out_of_shape()); rooms.len()]
                }
            }
            Err(error) => vec![Err(error); rooms.len()],
        }
    }
}

/// An appended room's offset, or `None` when its once-marker was already set.
fn offset_or_once(id: RedisValue) -> Result<Option<Offset>, StateError> {
    if id.is_null() {
        return Ok(None);
    }
    id.as_string()
        .and_then(|id| id.parse().ok())
        .map(Some)
        .ok_or_else(out_of_shape)
}

fn out_of_shape() -> StateError {
    StateError::Data("recovery_append answered without an offset".into())
}

#[async_trait]
impl RecoveryLog for RedisLog {
    async fn append_all(
        &self,
        ns: Namespace,
        rooms: &[String],
        event: &str,
        data: &Value,
    ) -> Vec<Result<Offset, StateError>> {
        self.keep(ns, rooms, None, event, data)
            .await
            .into_iter()
            .map(|kept| kept?.ok_or_else(out_of_shape))
            .collect()
    }

    async fn append_once(
        &self,
        room: &UserRoom,
        once: &str,
        event: &str,
        data: &Value,
    ) -> Result<Option<Offset>, StateError> {
        let rooms = [room.room.clone()];
        let mut kept = self.keep(room.ns, &rooms, Some(once), event, data).await;
        kept.pop().unwrap_or_else(|| Err(out_of_shape()))
    }

    async fn read(
        &self,
        room: &UserRoom,
        from: Option<Offset>,
        lookback: Option<Duration>,
    ) -> Result<Resume, StateError> {
        let reply = self
            .resume
            .run(
                &self.client,
                vec![
                    self.keys.recovery_stream(&room.room),
                    self.keys.recovery_since(room_shard(&room.room)),
                ],
                vec![
                    from.map(|o| o.to_string()).unwrap_or_default(),
                    self.settings.max_events.to_string(),
                    self.settings.window.as_millis().to_string(),
                    room_mark(&room.room).to_string(),
                    lookback
                        .map(|l| l.as_millis().to_string())
                        .unwrap_or_default(),
                ],
            )
            .await?
            .into_array();
        let text = |v: &RedisValue| v.as_string().unwrap_or_default();
        let offset = |v: &RedisValue| {
            text(v)
                .parse::<Offset>()
                .map_err(|_| StateError::Data("a stream id that is not an offset".into()))
        };
        let (Some(head), Some(kept)) = (reply.first(), reply.get(1).and_then(RedisValue::as_i64))
        else {
            return Err(StateError::Data(
                "recovery_resume answered without a head".into(),
            ));
        };
        let head = offset(head)?;
        if kept != 1 {
            return Ok(Resume { missed: None, head });
        }
        let missed = reply[2..]
            .chunks_exact(3)
            .map(|e| {
                Ok(Entry {
                    ns: room.ns.path().to_owned(),
                    room: room.room.clone(),
                    offset: offset(&e[0])?,
                    event: text(&e[1]),
                    data: serde_json::from_str(&text(&e[2]))
                        .map_err(|e| StateError::Data(e.to_string()))?,
                })
            })
            .collect::<Result<Vec<_>, StateError>>()?;
        Ok(Resume {
            missed: Some(missed),
            head,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use shared::namespace::Namespace;

    use super::*;

    fn room(id: &str) -> UserRoom {
        UserRoom {
            ns: Namespace::Passengers,
            room: format!("passenger:{id}"),
        }
    }

    fn log(window_ms: u64, max_events: usize) -> (MemoryLog, mpsc::UnboundedReceiver<Entry>) {
        MemoryLog::new(RecoverySettings {
            window: Duration::from_millis(window_ms),
            max_events,
        })
    }

    #[tokio::test]
    async fn replays_what_followed_a_kept_offset_in_order_and_feeds_every_append() {
        let (log, mut feed) = log(60_000, 3);
        let mut offsets = Vec::new();
        for n in 0..4 {
            offsets.push(
                log.append(&room("a"), "e", &json!({ "n": n }))
                    .await
                    .expect("append"),
            );
        }
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        // Three kept: the first was trimmed, so its offset recovers nothing.
        let resumed = log
            .resume(&room("a"), Some(offsets[0]))
            .await
            .expect("read");
        assert_eq!(resumed.missed, None);
        assert_eq!(resumed.head, offsets[3], "the head is the newest entry");
        let missed = log
            .resume(&room("a"), Some(offsets[1]))
            .await
            .expect("read")
            .missed
            .expect("kept");
        assert_eq!(
            missed
                .iter()
                .map(|e| e.data["n"].clone())
                .collect::<Vec<_>>(),
            [json!(2), json!(3)]
        );
        assert_eq!(
            log.resume(&room("b"), Some(offsets[1]))
                .await
                .expect("read")
                .missed,
            None,
            "another room"
        );
        for offset in &offsets {
            assert_eq!(feed.recv().await.expect("fed").offset, *offset);
        }
    }

    async fn missed(log: &MemoryLog, room: &UserRoom, from: Offset) -> Option<Vec<Value>> {
        let resumed = log.resume(room, Some(from)).await.expect("read");
        resumed
            .missed
            .map(|m| m.into_iter().map(|e| e.data).collect())
    }

    #[tokio::test]
    async fn a_position_given_before_any_event_recovers_what_follows_it() {
        let (log, _feed) = log(60_000, 3);
        let position = log.resume(&room("a"), None).await.expect("read").head;
        assert!(position.is_position_of("passenger:a"));
        assert_eq!(missed(&log, &room("a"), position).await, Some(vec![]));
        log.append(&room("a"), "e", &json!(1))
            .await
            .expect("append");
        log.append(&room("a"), "e", &json!(2))
            .await
            .expect("append");
        assert_eq!(
            missed(&log, &room("a"), position).await,
            Some(vec![json!(1), json!(2)])
        );
        // Not another room's, nor one after which an event was trimmed.
        assert_eq!(missed(&log, &room("b"), position).await, None);
        for n in 3..=4 {
            log.append(&room("a"), "e", &json!(n))
                .await
                .expect("append");
        }
        assert_eq!(missed(&log, &room("a"), position).await, None, "1 trimmed");
    }

    #[tokio::test]
    async fn a_position_is_refused_once_out_of_the_window_or_from_another_log() {
        let (log, _feed) = log(50, 10);
        let position = log.resume(&room("a"), None).await.expect("read").head;
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(missed(&log, &room("a"), position).await, None, "expired");
        // A replica restarted: what it kept is gone, so its positions are refused.
        let (before, _feed) = super::tests::log(60_000, 10);
        let position = before.resume(&room("a"), None).await.expect("read").head;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (restarted, _feed) = super::tests::log(60_000, 10);
        assert_eq!(missed(&restarted, &room("a"), position).await, None);
    }

    #[tokio::test]
    async fn once_keeps_an_event_once_per_room() {
        let (log, _feed) = log(60_000, 10);
        let data = json!({ "sid": "s1" });
        assert!(
            log.append_once(&room("a"), "revoked:s1", "e", &data)
                .await
                .expect("a")
                .is_some()
        );
        assert!(
            log.append_once(&room("a"), "revoked:s1", "e", &data)
                .await
                .expect("a")
                .is_none()
        );
        assert!(
            log.append_once(&room("b"), "revoked:s1", "e", &data)
                .await
                .expect("b")
                .is_some()
        );
    }

    #[tokio::test]
    async fn rooms_whose_events_expired_are_reaped() {
        let (log, _feed) = log(20, 10);
        log.append(&room("gone"), "e", &json!(1))
            .await
            .expect("append");
        tokio::time::sleep(Duration::from_millis(40)).await;
        for _ in 0..REAP_EVERY {
            log.append(&room("busy"), "e", &json!(2))
                .await
                .expect("append");
        }
        assert_eq!(log.rooms(), 1, "only the busy room is left");
    }
}
