//! The Redis engine: state shared by every replica, under `REDIS_PREFIX`. Each operation is one
//! Lua script: one round trip, atomic, timed by the Redis clock (replicas' clocks may differ).
//! Position reports are the exception: they go in batches (`redis_locations`). The keys are named
//! in [`super::keys`].

use async_trait::async_trait;
use fred::{clients::Client, interfaces::ClientLike, types::Value, types::scripts::Script};
use shared::{
    events::{DriverStatus, TripStatus},
    namespace::Namespace,
};
use std::time::Duration;

use super::keys::Keys;
use super::redis_locations::{LocationKeys, LocationWriter};
use super::{
    DriverState, LocationOutcome, NearbyDriver, NearbyQuery, NodeStats, Position, StateEngine,
    StateError, StateSettings, StatusChange, Trip, TripWrite, geo::MAX_INDEXED_LAT,
};
use crate::{
    realtime::clock::now_rfc3339,
    telemetry::traces::{leaf, redis_span},
};

struct Scripts {
    set_status: Named,
    driver_state: Named,
    drivers_nearby: Named,
    presence_opened: Named,
    presence_closed: Named,
    presence_resync: Named,
    is_present: Named,
    reap_nodes: Named,
    expire_drivers: Named,
    renew_lease: Named,
    live_nodes: Named,
    read_trip: Named,
    write_trip: Named,
    user_socket_opened: Named,
    user_socket_closed: Named,
    handshake_rate: Named,
}

/// A script and the name its spans carry.
struct Named {
    name: &'static str,
    script: Script,
}

fn named(name: &'static str, lua: &str) -> Named {
    Named {
        name,
        script: Script::from_lua(lua),
    }
}

impl Scripts {
    fn new() -> Self {
        Self {
            set_status: named("set_status", include_str!("lua/set_status.lua")),
            driver_state: named("driver_state", include_str!("lua/driver_state.lua")),
            drivers_nearby: named("drivers_nearby", include_str!("lua/drivers_nearby.lua")),
            presence_opened: named("presence_opened", include_str!("lua/presence_opened.lua")),
            presence_closed: named("presence_closed", include_str!("lua/presence_closed.lua")),
            presence_resync: named("presence_resync", include_str!("lua/presence_resync.lua")),
            is_present: named("is_present", include_str!("lua/is_present.lua")),
            reap_nodes: named("reap_nodes", include_str!("lua/reap_nodes.lua")),
            expire_drivers: named("expire_drivers", include_str!("lua/expire_drivers.lua")),
            renew_lease: named("renew_lease", include_str!("lua/renew_lease.lua")),
            live_nodes: named("live_nodes", include_str!("lua/live_nodes.lua")),
            read_trip: named(
                "read_trip",
                "return redis.call('HMGET', KEYS[1], 'status', 'passengerId', 'driverId', 'version')",
            ),
            write_trip: named("write_trip", include_str!("lua/write_trip.lua")),
            user_socket_opened: named(
                "user_socket_opened",
                include_str!("lua/user_socket_opened.lua"),
            ),
            user_socket_closed: named(
                "user_socket_closed",
                "return redis.call('ZREM', KEYS[1], ARGV[1])",
            ),
            handshake_rate: named("handshake_rate", include_str!("lua/handshake_rate.lua")),
        }
    }
}

pub struct RedisState {
    client: Client,
    keys: Keys,
    settings: StateSettings,
    scripts: Scripts,
    locations: LocationWriter,
}

/// How long a user's socket registry outlives its last opened socket: longer than any socket
/// lives without a reconnect in practice; bounds the entries of replicas that died.
const USER_SOCKETS_TTL: Duration = Duration::from_secs(24 * 3600);

/// Drivers turned OFFLINE per sweep at most (the rest wait for the next sweep).
const EXPIRE_BATCH: usize = 500;

impl RedisState {
    /// Starts the location writer: call within the Tokio runtime.
    pub fn new(client: Client, prefix: &str, settings: StateSettings) -> Self {
        let locations = LocationWriter::spawn(
            client.clone(),
            LocationKeys {
                keys: Keys::new(prefix),
                rate_per_s: settings.location_rate_per_s,
                stream_maxlen: settings.location_stream_maxlen,
            },
        );
        Self {
            locations,
            client,
            keys: Keys::new(prefix),
            settings,
            scripts: Scripts::new(),
        }
    }

    /// Replicas whose lease lapsed (or `node`, leaving) lose their drivers; each driver no replica
    /// holds any more starts its grace.
    async fn reap_nodes(&self, node: Option<&str>) -> Result<(), StateError> {
        /// Lapsed replicas handled per sweep at most.
        const REAP_BATCH: &str = "50";
        self.run(
            &self.scripts.reap_nodes,
            vec![self.keys.nodes(), self.keys.presence_pending()],
            vec![
                self.keys.prefix().to_owned(),
                self.settings.presence_grace.as_millis().to_string(),
                REAP_BATCH.into(),
                node.unwrap_or_default().to_owned(),
                self.settings.node_id.clone(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Runs one script: a client span on traced paths.
    async fn run(
        &self,
        script: &Named,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, StateError> {
        // While the connection is down fred would queue the call until it reconnects: fail at
        // once instead (a frozen Redis is bounded by the command timeout).
        if !self.client.is_connected() {
            return Err(StateError::Unavailable);
        }
        let call = script
            .script
            .evalsha_with_reload::<Value, _, _>(&self.client, keys, args);
        Ok(leaf(redis_span("EVALSHA", script.name), call).await?)
    }
}

/// A reply's string, `None` for nil or ''.
fn text(value: &Value) -> Option<String> {
    value.as_string().filter(|s| !s.is_empty())
}

fn number(value: &Value) -> Option<f64> {
    text(value).and_then(|s| s.parse().ok())
}

#[async_trait]
impl StateEngine for RedisState {
    async fn set_status(
        &self,
        driver: &str,
        status: DriverStatus,
        at: &str,
    ) -> Result<Option<DriverStatus>, StateError> {
        let previous = self
            .run(
                &self.scripts.set_status,
                vec![self.keys.driver(driver), self.keys.drivers_geo()],
                vec![
                    driver.into(),
                    status.as_str().into(),
                    at.into(),
                    MAX_INDEXED_LAT.to_string(),
                ],
            )
            .await?;
        Ok(text(&previous).and_then(|s| DriverStatus::parse(&s)))
    }

    async fn record_location(
        &self,
        driver: &str,
        p: &Position,
    ) -> Result<LocationOutcome, StateError> {
        self.locations.record(driver, p).await
    }

    async fn driver_state(&self, driver: &str) -> Result<Option<DriverState>, StateError> {
        let reply = self
            .run(
                &self.scripts.driver_state,
                vec![
                    self.keys.driver(driver),
                    self.keys.presence(driver),
                    self.keys.nodes(),
                ],
                vec![],
            )
            .await?
            .into_array();
        if reply.first().and_then(Value::as_i64) != Some(1) {
            return Ok(None);
        }
        let field = |i: usize| reply.get(i + 2).and_then(text);
        let num = |i: usize| reply.get(i + 2).and_then(number);
        let last_location = match (num(1), num(2)) {
            (Some(lat), Some(lng)) => Some(Position {
                lat,
                lng,
                heading: num(3),
                speed: num(4),
                accuracy: num(5),
                recorded_at: field(6),
                at: field(7).unwrap_or_default(),
            }),
            _ => None,
        };
        Ok(Some(DriverState {
            status: field(0)
                .and_then(|s| DriverStatus::parse(&s))
                .unwrap_or(DriverStatus::Offline),
            connected: reply.get(1).and_then(Value::as_i64) == Some(1),
            last_location,
            active_trip_id: field(8),
        }))
    }

    async fn drivers_nearby(&self, q: &NearbyQuery) -> Result<Vec<NearbyDriver>, StateError> {
        let rows = self
            .run(
                &self.scripts.drivers_nearby,
                vec![self.keys.drivers_geo()],
                vec![
                    q.lng.to_string(),
                    q.lat.to_string(),
                    q.radius_m.to_string(),
                    q.limit.to_string(),
                    self.keys.driver_prefix(),
                ],
            )
            .await?
            .into_array();
        Ok(rows
            .chunks_exact(5)
            .filter_map(|row| {
                Some(NearbyDriver {
                    driver_id: text(&row[0])?,
                    distance_m: number(&row[1])?,
                    lat: number(&row[2])?,
                    lng: number(&row[3])?,
                    status: DriverStatus::Online,
                    at: text(&row[4]).unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn presence_opened(&self, driver: &str) -> Result<(), StateError> {
        self.run(
            &self.scripts.presence_opened,
            vec![
                self.keys.presence(driver),
                self.keys.node_drivers(&self.settings.node_id),
                self.keys.presence_pending(),
                self.keys.driver(driver),
            ],
            vec![self.settings.node_id.clone(), driver.into()],
        )
        .await?;
        Ok(())
    }

    async fn presence_closed(&self, driver: &str) -> Result<(), StateError> {
        self.run(
            &self.scripts.presence_closed,
            vec![
                self.keys.presence(driver),
                self.keys.node_drivers(&self.settings.node_id),
                self.keys.presence_pending(),
            ],
            vec![
                self.settings.node_id.clone(),
                driver.into(),
                self.settings.presence_grace.as_millis().to_string(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn presence_resync(&self, drivers: &[String]) -> Result<(), StateError> {
        let mut args = vec![
            self.keys.prefix().to_owned(),
            self.settings.node_id.clone(),
            self.settings.presence_grace.as_millis().to_string(),
        ];
        args.extend(drivers.iter().cloned());
        self.run(
            &self.scripts.presence_resync,
            vec![
                self.keys.node_drivers(&self.settings.node_id),
                self.keys.presence_pending(),
            ],
            args,
        )
        .await?;
        Ok(())
    }

    async fn is_present(&self, driver: &str) -> Result<bool, StateError> {
        let reply = self
            .run(
                &self.scripts.is_present,
                vec![self.keys.presence(driver), self.keys.nodes()],
                vec![],
            )
            .await?;
        Ok(reply.as_i64() == Some(1))
    }

    async fn expire_presence(&self, reap_lapsed: bool) -> Result<Vec<StatusChange>, StateError> {
        if reap_lapsed {
            self.reap_nodes(None).await?;
        }
        let at = now_rfc3339();
        let changed = self
            .run(
                &self.scripts.expire_drivers,
                vec![self.keys.presence_pending(), self.keys.drivers_geo()],
                vec![
                    self.keys.prefix().to_owned(),
                    at.clone(),
                    EXPIRE_BATCH.to_string(),
                ],
            )
            .await?
            .into_array();
        Ok(changed
            .iter()
            .filter_map(text)
            .map(|driver_id| StatusChange {
                driver_id,
                status: DriverStatus::Offline,
                at: at.clone(),
            })
            .collect())
    }

    async fn trip(&self, trip_id: &str) -> Result<Option<Trip>, StateError> {
        let reply = self
            .run(
                &self.scripts.read_trip,
                vec![self.keys.trip(trip_id)],
                vec![],
            )
            .await?
            .into_array();
        let field = |i: usize| reply.get(i).and_then(text);
        let (Some(status), Some(passenger_id), Some(version)) = (
            field(0).and_then(|s| TripStatus::parse(&s)),
            field(1),
            field(3).and_then(|v| v.parse().ok()),
        ) else {
            return Ok(None);
        };
        Ok(Some(Trip {
            status,
            passenger_id,
            driver_id: field(2),
            version,
        }))
    }

    async fn write_trip(&self, w: &TripWrite) -> Result<bool, StateError> {
        let mut args = vec![
            w.expected_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
            w.status.as_str().into(),
            w.passenger_id.clone(),
            w.driver_id.clone().unwrap_or_default(),
            self.settings.trip_ttl.as_secs().max(1).to_string(),
            w.bind.clone().unwrap_or_default(),
            w.trip_id.clone(),
            self.keys.driver_prefix(),
        ];
        args.extend(w.unbind.iter().cloned());
        let written = self
            .run(
                &self.scripts.write_trip,
                vec![self.keys.trip(&w.trip_id)],
                args,
            )
            .await?;
        Ok(written.as_i64() == Some(1))
    }

    async fn renew_lease(&self, stats: &NodeStats) -> Result<bool, StateError> {
        let json = serde_json::to_string(stats).map_err(|e| StateError::Data(e.to_string()))?;
        let was_live = self
            .run(
                &self.scripts.renew_lease,
                vec![
                    self.keys.nodes(),
                    self.keys.node_stats(&self.settings.node_id),
                ],
                vec![
                    self.settings.node_id.clone(),
                    self.settings.node_ttl.as_millis().to_string(),
                    json,
                ],
            )
            .await?;
        Ok(was_live.as_i64() == Some(1))
    }

    async fn live_nodes(&self) -> Result<Vec<NodeStats>, StateError> {
        let rows = self
            .run(
                &self.scripts.live_nodes,
                vec![self.keys.nodes()],
                vec![self.keys.prefix().to_owned()],
            )
            .await?
            .into_array();
        Ok(rows
            .iter()
            .filter_map(text)
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect())
    }

    async fn release_lease(&self) -> Result<(), StateError> {
        self.reap_nodes(Some(&self.settings.node_id)).await
    }

    async fn user_socket_opened(
        &self,
        ns: Namespace,
        user: &str,
        socket: &str,
        max: u32,
    ) -> Result<Vec<String>, StateError> {
        let replaced = self
            .run(
                &self.scripts.user_socket_opened,
                vec![self.keys.user_sockets(ns, user)],
                vec![
                    socket.to_owned(),
                    max.to_string(),
                    USER_SOCKETS_TTL.as_millis().to_string(),
                ],
            )
            .await?
            .into_array();
        Ok(replaced.iter().filter_map(text).collect())
    }

    async fn user_socket_closed(
        &self,
        ns: Namespace,
        user: &str,
        socket: &str,
    ) -> Result<(), StateError> {
        self.run(
            &self.scripts.user_socket_closed,
            vec![self.keys.user_sockets(ns, user)],
            vec![socket.to_owned()],
        )
        .await?;
        Ok(())
    }

    async fn handshake_allowed(
        &self,
        user: &str,
        limit: u32,
        window: Duration,
    ) -> Result<bool, StateError> {
        let allowed = self
            .run(
                &self.scripts.handshake_rate,
                vec![self.keys.handshakes(user)],
                vec![limit.to_string(), window.as_millis().to_string()],
            )
            .await?;
        Ok(allowed.as_i64() == Some(1))
    }
}
