//! The Redis engine: state shared by every replica, under `REDIS_PREFIX`, on one Redis or a
//! Redis Cluster. Each step is a Lua script over keys of one hash slot ([`super::keys`]): one
//! round trip, atomic, timed by the Redis clock (replicas' clocks may differ). An operation that
//! spans slots (a driver and the replica registry, a trip and its drivers) is a few such steps,
//! each idempotent, ordered so that a step left undone is repaired by a later one
//! (docs/decisions.md, "State on a Redis Cluster"). Position reports go in batches
//! ([`locations`]).

mod drivers;
mod leases;
mod limits;
mod locations;
mod offers;
mod presence;
mod trips;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use async_trait::async_trait;
use fred::{clients::Client, interfaces::ClientLike, types::Value};
use futures::future::try_join_all;
use shared::{
    events::{DriverStatus, OfferAnswer, TripStatus},
    namespace::Namespace,
};

use super::keys::{DRIVER_SHARDS, Keys};
use super::script::{Named, by_shard, text};
use super::{
    Answered, DriverState, HeldOffer, LocationOutcome, NearbyDriver, NearbyQuery, NodeStats,
    Position, StateError, StateSettings, StatusChange, Trip, TripWrite, geo::MAX_INDEXED_LAT,
};
use crate::{clock::now_rfc3339, tasks::Tasks};
use locations::{LocationKeys, LocationWriter};

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        struct Scripts { $($name: Named,)* }
        impl Scripts {
            fn new() -> Self {
                Self { $($name: Named::new(
                    stringify!($name),
                    include_str!(concat!("lua/", stringify!($name), ".lua")),
                ),)* }
            }
        }
    };
}

scripts!(
    set_status,
    driver_state,
    presence_nodes,
    any_live,
    geo_search,
    drivers_read,
    presence_assert,
    presence_release,
    pending_add,
    node_drivers,
    renew_lease,
    live_nodes,
    claim_lapsed,
    finish_reap,
    claim_due,
    expire_drivers,
    pending_done,
    write_trip,
    bind_trip,
    bindings_done,
    user_socket_opened,
    handshake_rate,
    offer_hold,
    offer_answer,
);

const READ_TRIP: &str = "return redis.call('HMGET', KEYS[1], 'status', 'passengerId', 'driverId', \
     'version', 'bindings')";
const USER_SOCKET_CLOSED: &str = "return redis.call('ZREM', KEYS[1], ARGV[1])";
const IN_GRACE: &str = "return redis.call('ZSCORE', KEYS[1], ARGV[1])";
const OFFERS_READ: &str = "return redis.call('HGETALL', KEYS[1])";

pub struct RedisState {
    client: Client,
    keys: Keys,
    settings: StateSettings,
    scripts: Scripts,
    read_trip: Named,
    user_socket_closed: Named,
    in_grace: Named,
    offers_read: Named,
    locations: LocationWriter,
    /// This replica's lease epoch (the Redis time its lease last started), written with its
    /// presence so that a reaper removes only what it wrote before its lease lapsed.
    epoch: AtomicU64,
}

/// How long a user's socket registry outlives its last opened socket: longer than any socket
/// lives without a reconnect in practice; bounds the entries of replicas that died.
const USER_SOCKETS_TTL: Duration = Duration::from_secs(24 * 3600);

/// Drivers turned OFFLINE per sweep at most (the rest wait for the next sweep).
const EXPIRE_BATCH: usize = 500;

/// Lapsed replicas reaped per sweep at most.
const REAP_BATCH: usize = 50;

/// How long a claim on a lapsed replica or on due drivers holds: a replica that dies while
/// handling them leaves them to another after this.
const CLAIM: Duration = Duration::from_secs(30);

impl RedisState {
    /// Starts the location writer, owned by `tasks`: call within the Tokio runtime.
    pub fn new(client: Client, prefix: &str, settings: StateSettings, tasks: &Tasks) -> Self {
        let locations = LocationWriter::spawn(
            client.clone(),
            LocationKeys {
                keys: Keys::new(prefix),
                rate_per_s: settings.location_rate_per_s,
                stream_maxlen: settings.location_stream_maxlen,
                clustered: client.is_clustered(),
            },
            tasks,
        );
        Self {
            locations,
            client,
            keys: Keys::new(prefix),
            settings,
            scripts: Scripts::new(),
            read_trip: Named::new("read_trip", READ_TRIP),
            user_socket_closed: Named::new("user_socket_closed", USER_SOCKET_CLOSED),
            in_grace: Named::new("in_grace", IN_GRACE),
            offers_read: Named::new("offers_read", OFFERS_READ),
            epoch: AtomicU64::new(0),
        }
    }

    async fn run(
        &self,
        script: &Named,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, StateError> {
        script.run(&self.client, keys, args).await
    }

    fn groups<T>(&self, items: Vec<T>, driver: impl Fn(&T) -> &str) -> Vec<Vec<T>> {
        by_shard(self.client.is_clustered(), items, driver)
    }

    /// Runs `script` once per group of `items` whose keys share a slot (one call on a single
    /// Redis): its keys are each item's `keys`, its arguments `head` then each item's `arg`, in
    /// item order. Returns each call's reply.
    async fn per_shard<T>(
        &self,
        script: &Named,
        items: Vec<T>,
        driver: impl Fn(&T) -> &str,
        keys: impl Fn(&T) -> Vec<String>,
        head: Vec<String>,
        arg: impl Fn(&T) -> Option<String>,
    ) -> Result<Vec<Value>, StateError> {
        let calls = self.groups(items, driver).into_iter().map(|group| {
            let group_keys = group.iter().flat_map(&keys).collect();
            let mut args = head.clone();
            args.extend(group.iter().filter_map(&arg));
            self.run(script, group_keys, args)
        });
        try_join_all(calls).await
    }

    fn grace_ms(&self) -> String {
        self.settings.presence_grace.as_millis().to_string()
    }

    /// Whether one of `nodes` holds a live lease.
    async fn any_live(&self, nodes: Vec<String>) -> Result<bool, StateError> {
        if nodes.is_empty() {
            return Ok(false);
        }
        let live = self
            .run(&self.scripts.any_live, vec![self.keys.leases()], nodes)
            .await?;
        Ok(live.as_i64() == Some(1))
    }

    async fn node_drivers(&self, op: &str, drivers: &[String]) -> Result<Vec<String>, StateError> {
        let mut args = vec![op.to_owned()];
        args.extend(drivers.iter().cloned());
        let reply = self
            .run(
                &self.scripts.node_drivers,
                vec![self.keys.node_drivers(&self.settings.node_id)],
                args,
            )
            .await?;
        Ok(strings(reply))
    }

    /// Records this replica as holding `drivers` under its current epoch.
    async fn assert_presence(&self, drivers: Vec<String>) -> Result<(), StateError> {
        let epoch = self.epoch.load(Ordering::SeqCst).to_string();
        self.per_shard(
            &self.scripts.presence_assert,
            drivers,
            |d| d,
            |d| vec![self.keys.presence(d), self.keys.driver(d)],
            vec![self.settings.node_id.clone(), epoch],
            |_| None,
        )
        .await?;
        Ok(())
    }

    /// `node` no longer holds `drivers` (only entries of `max_epoch` or older, when given); the
    /// drivers now held by no replica start their grace from `start` (`None`: now).
    ///
    /// The grace is written first, for every driver released: the two writes are two scripts
    /// (the pending set and the presence hashes are in different slots), and in the other order
    /// a reader between them found a driver neither present nor in grace (`is_reachable`: an
    /// offer answered 404 to a driver who had just closed one socket). A driver still held
    /// elsewhere keeps a harmless entry: its expiry finds it present and changes nothing.
    async fn release_presence(
        &self,
        node: &str,
        max_epoch: &str,
        drivers: Vec<String>,
        start: Option<&str>,
        keep_earlier_deadline: bool,
    ) -> Result<(), StateError> {
        if drivers.is_empty() {
            return Ok(());
        }
        let mut args = vec![
            self.grace_ms(),
            start.unwrap_or_default().to_owned(),
            if keep_earlier_deadline { "NX" } else { "" }.to_owned(),
        ];
        args.extend(drivers.iter().cloned());
        self.run(
            &self.scripts.pending_add,
            vec![self.keys.presence_pending()],
            args,
        )
        .await?;
        self.per_shard(
            &self.scripts.presence_release,
            drivers,
            |d| d,
            |d| vec![self.keys.presence(d)],
            vec![node.to_owned(), max_epoch.to_owned()],
            |_| None,
        )
        .await?;
        Ok(())
    }

    /// Replicas whose lease lapsed (or `leaving`) lose their drivers; each driver no replica
    /// holds any more starts its grace from the lapse.
    async fn reap_nodes(&self, leaving: Option<&str>) -> Result<(), StateError> {
        let claimed = self
            .run(
                &self.scripts.claim_lapsed,
                vec![self.keys.leases(), self.keys.reaping(), self.keys.epochs()],
                vec![
                    REAP_BATCH.to_string(),
                    leaving.unwrap_or_default().to_owned(),
                    self.settings.node_id.clone(),
                    CLAIM.as_millis().to_string(),
                ],
            )
            .await?
            .into_array();
        for claim in claimed.chunks_exact(4) {
            let [node, epoch, score, lapsed] = [0, 1, 2, 3].map(|i| claim[i].as_string());
            let (Some(node), Some(score), Some(lapsed)) = (node, score, lapsed) else {
                return Err(StateError::Data(
                    "claim_lapsed answered out of shape".into(),
                ));
            };
            let held = strings(
                self.run(
                    &self.scripts.node_drivers,
                    vec![self.keys.node_drivers(&node)],
                    vec!["list".into()],
                )
                .await?,
            );
            let epoch = epoch.unwrap_or_default();
            self.release_presence(&node, &epoch, held, Some(&lapsed), true)
                .await?;
            self.run(
                &self.scripts.finish_reap,
                vec![
                    self.keys.leases(),
                    self.keys.reaping(),
                    self.keys.epochs(),
                    self.keys.node_stats(),
                    self.keys.node_drivers(&node),
                ],
                vec![node, score],
            )
            .await?;
        }
        Ok(())
    }

    /// Applies recorded bindings (unbinding first, so a driver both unbound and bound ends
    /// bound), then forgets them unless a later write recorded others.
    async fn apply_bindings(&self, recorded: &str) -> Result<(), StateError> {
        let b: Bindings =
            serde_json::from_str(recorded).map_err(|e| StateError::Data(e.to_string()))?;
        let ops: Vec<(&str, &str)> = b
            .unbind
            .iter()
            .map(|d| (d.as_str(), "unbind"))
            .chain(b.bind.iter().map(|d| (d.as_str(), "bind")))
            .collect();
        self.per_shard(
            &self.scripts.bind_trip,
            ops,
            |(d, _)| d,
            |(d, _)| vec![self.keys.driver(d)],
            vec![b.trip.clone(), b.passenger.clone(), b.version.to_string()],
            |(_, op)| Some((*op).to_owned()),
        )
        .await?;
        self.run(
            &self.scripts.bindings_done,
            vec![self.keys.trip(&b.trip)],
            vec![recorded.to_owned()],
        )
        .await?;
        Ok(())
    }

    /// Drivers past their grace that no replica holds become OFFLINE.
    async fn expire_due(&self) -> Result<Vec<StatusChange>, StateError> {
        let claimed = strings(
            self.run(
                &self.scripts.claim_due,
                vec![self.keys.presence_pending()],
                vec![EXPIRE_BATCH.to_string(), CLAIM.as_millis().to_string()],
            )
            .await?,
        );
        let Some((claim, due)) = claimed.split_first() else {
            return Err(StateError::Data("claim_due answered out of shape".into()));
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let at = now_rfc3339();
        let changed: Vec<String> = self
            .per_shard(
                &self.scripts.expire_drivers,
                due.to_vec(),
                |d| d,
                |d| {
                    vec![
                        self.keys.presence(d),
                        self.keys.driver(d),
                        self.keys.driver_geo(d),
                    ]
                },
                vec![at.clone()],
                |d| Some(d.clone()),
            )
            .await?
            .into_iter()
            .flat_map(strings)
            .collect();
        let mut args = vec![claim.clone()];
        args.extend(due.iter().cloned());
        self.run(
            &self.scripts.pending_done,
            vec![self.keys.presence_pending()],
            args,
        )
        .await?;
        Ok(changed
            .into_iter()
            .map(|driver_id| StatusChange {
                driver_id,
                status: DriverStatus::Offline,
                at: at.clone(),
            })
            .collect())
    }
}

/// The driver bindings a trip write changes, recorded in the trip hash until applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Bindings {
    trip: String,
    /// The trip's version once written: bindings apply in version order.
    version: u64,
    passenger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unbind: Vec<String>,
}

impl Bindings {
    fn of(w: &TripWrite) -> Option<Self> {
        (w.bind.is_some() || !w.unbind.is_empty()).then(|| Self {
            trip: w.trip_id.clone(),
            version: w.expected_version.map_or(1, |v| v + 1),
            passenger: w.passenger_id.clone(),
            bind: w.bind.clone(),
            unbind: w.unbind.clone(),
        })
    }
}

fn number(value: &Value) -> Option<f64> {
    text(value).and_then(|s| s.parse().ok())
}

/// The non-empty strings of an array reply.
fn strings(value: Value) -> Vec<String> {
    value.into_array().iter().filter_map(text).collect()
}
