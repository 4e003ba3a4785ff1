//! Where recoverable events are kept, and how every replica hears of them in order.
//!
//! Appending assigns the offset and publishes the entry in one step: Redis runs one script that
//! appends to the room's stream and publishes on the room's shard channel (every replica is
//! subscribed to all of them); the memory log assigns, keeps and queues under one lock. Each
//! replica then hands the entries, in that order, to its sockets' gates (`gate::run_feed`).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use async_trait::async_trait;
use fred::{clients::Client, types::Value as RedisValue};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Entry, Offset, RecoverySettings, UserRoom};
use crate::{
    realtime::expiry::now_ms,
    state::{StateError, keys::Keys, keys::room_shard, redis::Named},
};

#[async_trait]
pub trait RecoveryLog: Send + Sync {
    /// Keeps `event` for `room` under a new offset and publishes it to every replica.
    async fn append(
        &self,
        room: &UserRoom,
        event: &str,
        data: &Value,
    ) -> Result<Offset, StateError>;

    /// As [`RecoveryLog::append`], unless an event was already kept for `room` under `once`
    /// within the window (then `None`): for events every replica hears and handles.
    async fn append_once(
        &self,
        room: &UserRoom,
        once: &str,
        event: &str,
        data: &Value,
    ) -> Result<Option<Offset>, StateError>;

    /// What `room` received after `offset`, oldest first; `None` when `offset` is not kept
    /// (expired, trimmed, never issued).
    async fn after(
        &self,
        room: &UserRoom,
        offset: Offset,
    ) -> Result<Option<Vec<Entry>>, StateError>;
}

/// A single replica's log: a ring per room, trimmed by count and age as it is used, rooms with
/// nothing left reaped every few thousand appends.
pub struct MemoryLog {
    settings: RecoverySettings,
    inner: Mutex<Rings>,
    feed: mpsc::UnboundedSender<Entry>,
}

#[derive(Default)]
struct Rings {
    rooms: HashMap<String, VecDeque<Entry>>,
    /// Once-markers (`append_once`), by room and key, with when they lapse (ms).
    once: HashMap<(String, String), u64>,
    last: Option<Offset>,
    appends: u64,
}

/// Rooms are reaped once per this many appends.
const REAP_EVERY: u64 = 4096;

impl MemoryLog {
    /// The log and the feed of its entries, in offset order.
    pub fn new(settings: RecoverySettings) -> (Self, mpsc::UnboundedReceiver<Entry>) {
        let (feed, entries) = mpsc::unbounded_channel();
        let log = Self {
            settings,
            inner: Mutex::new(Rings::default()),
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

fn trim(ring: &mut VecDeque<Entry>, max: usize, oldest_ms: u64) {
    while ring.len() > max || ring.front().is_some_and(|e| e.offset.ms < oldest_ms) {
        ring.pop_front();
    }
}

#[async_trait]
impl RecoveryLog for MemoryLog {
    async fn append(
        &self,
        room: &UserRoom,
        event: &str,
        data: &Value,
    ) -> Result<Offset, StateError> {
        let now = now_ms();
        let oldest = self.expired_before(now);
        let mut rings = self.lock();
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
        ring.push_back(entry.clone());
        trim(ring, self.settings.max_events, oldest);
        rings.appends += 1;
        if rings.appends.is_multiple_of(REAP_EVERY) {
            rings.rooms.retain(|_, ring| {
                trim(ring, usize::MAX, oldest);
                !ring.is_empty()
            });
            rings.once.retain(|_, lapses| *lapses > now);
        }
        // Under the lock: the feed carries entries in offset order.
        self.feed
            .send(entry)
            .map_err(|_| StateError::Stopped("the recovery feed stopped"))?;
        Ok(offset)
    }

    async fn append_once(
        &self,
        room: &UserRoom,
        once: &str,
        event: &str,
        data: &Value,
    ) -> Result<Option<Offset>, StateError> {
        let now = now_ms();
        {
            let mut rings = self.lock();
            let key = (room.room.clone(), once.to_owned());
            if rings.once.get(&key).is_some_and(|lapses| *lapses > now) {
                return Ok(None);
            }
            let lapses = now + self.settings.window.as_millis() as u64;
            rings.once.insert(key, lapses);
        }
        self.append(room, event, data).await.map(Some)
    }

    async fn after(
        &self,
        room: &UserRoom,
        offset: Offset,
    ) -> Result<Option<Vec<Entry>>, StateError> {
        let oldest = self.expired_before(now_ms());
        let mut rings = self.lock();
        let Some(ring) = rings.rooms.get_mut(&room.room) else {
            return Ok(None);
        };
        trim(ring, self.settings.max_events, oldest);
        let Some(at) = ring.iter().position(|e| e.offset == offset) else {
            return Ok(None);
        };
        Ok(Some(ring.iter().skip(at + 1).cloned().collect()))
    }
}

/// The cluster's log: a capped, expiring stream per room, published on the room's shard channel
/// by the same script.
pub struct RedisLog {
    client: Client,
    keys: Keys,
    settings: RecoverySettings,
    append: Named,
    after: Named,
}

impl RedisLog {
    pub fn new(client: Client, keys: Keys, settings: RecoverySettings) -> Self {
        Self {
            client,
            keys,
            settings,
            append: Named::new(
                "recovery_append",
                include_str!("../state/lua/recovery_append.lua"),
            ),
            after: Named::new(
                "recovery_after",
                include_str!("../state/lua/recovery_after.lua"),
            ),
        }
    }
}

impl RedisLog {
    /// Appends (and publishes) unless `once` was already marked for the room.
    async fn keep(
        &self,
        room: &UserRoom,
        once: Option<&str>,
        event: &str,
        data: &Value,
    ) -> Result<Option<Offset>, StateError> {
        let json = serde_json::to_string(data).map_err(|e| StateError::Data(e.to_string()))?;
        let mut keys = vec![self.keys.recovery_stream(&room.room)];
        keys.extend(once.map(|once| self.keys.recovery_once(&room.room, once)));
        let id = self
            .append
            .run(
                &self.client,
                keys,
                vec![
                    self.settings.max_events.to_string(),
                    self.settings.window.as_millis().to_string(),
                    self.keys.recovery_channel(room_shard(&room.room)),
                    room.ns.path().to_owned(),
                    room.room.clone(),
                    event.to_owned(),
                    json,
                ],
            )
            .await?;
        if id.is_null() {
            return Ok(None);
        }
        id.as_string()
            .and_then(|id| id.parse().ok())
            .map(Some)
            .ok_or_else(|| StateError::Data("recovery_append answered without an offset".into()))
    }
}

#[async_trait]
impl RecoveryLog for RedisLog {
    async fn append(
        &self,
        room: &UserRoom,
        event: &str,
        data: &Value,
    ) -> Result<Offset, StateError> {
        self.keep(room, None, event, data)
            .await?
            .ok_or_else(|| StateError::Data("recovery_append answered without an offset".into()))
    }

    async fn append_once(
        &self,
        room: &UserRoom,
        once: &str,
        event: &str,
        data: &Value,
    ) -> Result<Option<Offset>, StateError> {
        self.keep(room, Some(once), event, data).await
    }

    async fn after(
        &self,
        room: &UserRoom,
        offset: Offset,
    ) -> Result<Option<Vec<Entry>>, StateError> {
        let reply = self
            .after
            .run(
                &self.client,
                vec![self.keys.recovery_stream(&room.room)],
                vec![offset.to_string(), self.settings.max_events.to_string()],
            )
            .await?
            .into_array();
        if reply.first().and_then(RedisValue::as_i64) != Some(1) {
            return Ok(None);
        }
        reply[1..]
            .chunks_exact(3)
            .map(|e| {
                let text = |v: &RedisValue| v.as_string().unwrap_or_default();
                Ok(Entry {
                    ns: room.ns.path().to_owned(),
                    room: room.room.clone(),
                    offset: text(&e[0]).parse().map_err(|_| {
                        StateError::Data("a stream id that is not an offset".into())
                    })?,
                    event: text(&e[1]),
                    data: serde_json::from_str(&text(&e[2]))
                        .map_err(|e| StateError::Data(e.to_string()))?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
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
        assert_eq!(log.after(&room("a"), offsets[0]).await.expect("read"), None);
        let missed = log
            .after(&room("a"), offsets[1])
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(
            missed
                .iter()
                .map(|e| e.data["n"].clone())
                .collect::<Vec<_>>(),
            [json!(2), json!(3)]
        );
        assert_eq!(
            log.after(&room("b"), offsets[1]).await.expect("read"),
            None,
            "another room"
        );
        for offset in &offsets {
            assert_eq!(feed.recv().await.expect("fed").offset, *offset);
        }
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
