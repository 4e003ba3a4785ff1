//! The memory engine: a single replica without Redis keeps the same state in-process.
//! One mutex, never held across an await.

mod drivers;
mod leases;
mod limits;
mod offers;
mod presence;
mod trips;

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use shared::{
    events::{DriverStatus, OfferAnswer},
    namespace::Namespace,
};

use super::{
    ActiveTrip, Answered, DriverState, HeldOffer, LocationOutcome, NearbyDriver, NearbyQuery,
    NodeStats, Position, StateError, StateSettings, StatusChange, Trip, TripWrite, geo,
};
use crate::clock::now_rfc3339;

#[derive(Default)]
struct DriverRecord {
    status: Option<DriverStatus>,
    position: Option<Position>,
    active_trip: Option<ActiveTrip>,
    /// Open sockets on this (only) replica hold the driver present.
    present: bool,
    /// Grace deadline once the last socket closed.
    offline_at: Option<Instant>,
    /// Location rate window: (second, count).
    window: (u64, u32),
}

#[derive(Default)]
struct Inner {
    drivers: HashMap<String, DriverRecord>,
    trips: HashMap<String, (Trip, Instant)>,
    stats: NodeStats,
    /// Open sockets per user and namespace, oldest first.
    user_sockets: HashMap<(Namespace, String), Vec<String>>,
    /// Handshake windows per user: (window start, handshakes counted in it).
    handshakes: HashMap<String, (Instant, u32)>,
    /// Offers held per driver, oldest first, with their outcome once there is one.
    offers: HashMap<String, Vec<(HeldOffer, Option<OfferOutcome>)>>,
}

/// How long an offer is kept after its expiry (then forgotten).
const OFFERS_KEPT_MS: u64 = 60_000;

/// How a held offer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OfferOutcome {
    Answered(OfferAnswer),
    Closed,
}

pub struct MemoryState {
    settings: StateSettings,
    inner: Mutex<Inner>,
}

impl MemoryState {
    pub fn new(settings: StateSettings) -> Self {
        Self {
            settings,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Handshake windows kept before finished ones are swept.
const HANDSHAKE_WINDOWS_KEPT: usize = 10_000;

/// How often the sweeper looks for expired presence (both engines).
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DriverStore, LimitStore, PresenceStore, TripStore};
    use shared::events::TripStatus;

    fn engine(grace_ms: u64) -> MemoryState {
        MemoryState::new(StateSettings {
            node_id: "n".into(),
            location_rate_per_s: 3,
            presence_grace: Duration::from_millis(grace_ms),
            node_ttl: Duration::from_secs(10),
            trip_ttl: Duration::from_secs(60),
            location_stream_maxlen: 0,
        })
    }

    fn at(lat: f64, lng: f64) -> Position {
        Position {
            lat,
            lng,
            heading: None,
            speed: None,
            accuracy: None,
            recorded_at: None,
            at: "t".into(),
        }
    }

    #[tokio::test]
    async fn only_online_drivers_are_found_nearest_first() {
        let s = engine(1000);
        for (id, lat) in [("far", 48.87), ("near", 48.851), ("busy", 48.8505)] {
            s.record_location(id, &at(lat, 2.35)).await.expect("store");
            let status = if id == "busy" {
                DriverStatus::Busy
            } else {
                DriverStatus::Online
            };
            s.set_status(id, status, "t").await.expect("status");
        }
        let q = NearbyQuery {
            lat: 48.85,
            lng: 2.35,
            radius_m: 5000.0,
            limit: 10,
        };
        let ids: Vec<_> = s
            .drivers_nearby(&q)
            .await
            .expect("query")
            .into_iter()
            .map(|d| d.driver_id)
            .collect();
        assert_eq!(ids, ["near", "far"]);
        let q = NearbyQuery {
            radius_m: 500.0,
            ..q
        };
        assert_eq!(s.drivers_nearby(&q).await.expect("query").len(), 1);
    }

    #[tokio::test]
    async fn the_location_rate_is_limited_per_driver() {
        let s = engine(1000);
        let mut limited = 0;
        for _ in 0..5 {
            if s.record_location("d", &at(1.0, 1.0)).await.expect("store")
                == LocationOutcome::RateLimited
            {
                limited += 1;
            }
        }
        // 5 within one second (or two, if the second turned): at least one refused.
        assert!(limited >= 1);
        assert!(matches!(
            s.record_location("other", &at(1.0, 1.0)).await,
            Ok(LocationOutcome::Accepted { .. })
        ));
    }

    #[tokio::test]
    async fn presence_expires_after_grace_unless_reopened() {
        let s = engine(0);
        s.set_status("d", DriverStatus::Online, "t")
            .await
            .expect("status");
        s.presence_opened("d").await.expect("open");
        s.presence_closed("d").await.expect("close");
        s.presence_opened("d").await.expect("reopen");
        assert!(s.expire_presence(true).await.expect("sweep").is_empty());
        s.presence_closed("d").await.expect("close");
        let changes = s.expire_presence(true).await.expect("sweep");
        assert_eq!(changes.len(), 1);
        assert_eq!(
            s.driver_state("d").await.expect("state").map(|d| d.status),
            Some(DriverStatus::Offline)
        );
        assert!(
            s.expire_presence(true).await.expect("sweep").is_empty(),
            "reported once"
        );
    }

    #[tokio::test]
    async fn a_resync_makes_the_held_drivers_present_and_releases_the_others() {
        let s = engine(0);
        for d in ["left", "stayed"] {
            s.set_status(d, DriverStatus::Online, "t")
                .await
                .expect("status");
            s.presence_opened(d).await.expect("open");
        }
        s.presence_resync(&["stayed".into(), "joined".into()])
            .await
            .expect("resync");
        assert!(!s.is_present("left").await.expect("left"));
        assert!(s.is_present("stayed").await.expect("stayed"));
        assert!(s.is_present("joined").await.expect("joined"));
        let changes = s.expire_presence(true).await.expect("sweep");
        let offline: Vec<_> = changes.iter().map(|c| c.driver_id.as_str()).collect();
        assert_eq!(
            offline,
            ["left"],
            "only the released driver's grace ran out"
        );
    }

    #[tokio::test]
    async fn trip_writes_are_compare_and_set_and_move_bindings() {
        let s = engine(1000);
        let write = TripWrite {
            trip_id: "t1".into(),
            expected_version: None,
            status: TripStatus::DriverAssigned,
            passenger_id: "p".into(),
            driver_id: Some("d1".into()),
            bind: Some("d1".into()),
            unbind: vec![],
        };
        assert!(s.write_trip(&write).await.expect("write"));
        assert!(
            !s.write_trip(&write).await.expect("write"),
            "stale version refused"
        );
        let moved = TripWrite {
            expected_version: Some(1),
            driver_id: Some("d2".into()),
            bind: Some("d2".into()),
            unbind: vec!["d1".into()],
            ..write
        };
        assert!(s.write_trip(&moved).await.expect("write"));
        let d1 = s.driver_state("d1").await.expect("state").expect("seen");
        assert_eq!(d1.active_trip_id, None);
        let d2 = s.driver_state("d2").await.expect("state").expect("seen");
        assert_eq!(d2.active_trip_id.as_deref(), Some("t1"));
    }

    #[tokio::test]
    async fn one_socket_past_the_cap_replaces_the_oldest_and_closed_ones_free_room() {
        let s = engine(1000);
        let ns = Namespace::Drivers;
        for id in ["a", "b"] {
            assert!(
                s.user_socket_opened(ns, "u", id, 2)
                    .await
                    .expect("ok")
                    .is_empty()
            );
        }
        assert_eq!(
            s.user_socket_opened(ns, "u", "c", 2).await.expect("ok"),
            ["a"]
        );
        // Another namespace and another user have caps of their own.
        assert!(
            s.user_socket_opened(Namespace::Passengers, "u", "p", 2)
                .await
                .expect("ok")
                .is_empty()
        );
        assert!(
            s.user_socket_opened(ns, "v", "x", 2)
                .await
                .expect("ok")
                .is_empty()
        );
        s.user_socket_closed(ns, "u", "b").await.expect("ok");
        assert!(
            s.user_socket_opened(ns, "u", "d", 2)
                .await
                .expect("ok")
                .is_empty()
        );
        assert_eq!(
            s.user_socket_opened(ns, "u", "e", 2).await.expect("ok"),
            ["c"]
        );
        // 0: no limit.
        for i in 0..10 {
            let id = format!("n{i}");
            assert!(
                s.user_socket_opened(ns, "w", &id, 0)
                    .await
                    .expect("ok")
                    .is_empty()
            );
        }
    }

    #[tokio::test]
    async fn handshakes_past_the_rate_are_refused_until_the_window_passes() {
        let s = engine(1000);
        let window = Duration::from_millis(200);
        for _ in 0..3 {
            assert!(s.handshake_allowed("u", 3, window).await.expect("ok"));
        }
        assert!(!s.handshake_allowed("u", 3, window).await.expect("ok"));
        assert!(
            s.handshake_allowed("v", 3, window).await.expect("ok"),
            "per user"
        );
        tokio::time::sleep(window).await;
        assert!(
            s.handshake_allowed("u", 3, window).await.expect("ok"),
            "a new window"
        );
    }
}
