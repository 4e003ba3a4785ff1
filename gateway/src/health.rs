//! Liveness, readiness and drain state of one replica.
//!
//! `/readyz` (internal) asks every dependency at request time; `/healthz` (public, for load
//! balancers) only says whether this replica takes connections.

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

use serde::Serialize;

use crate::{
    store::{postgres::PgStore, redis::RedisClients},
    telemetry::metrics::PoolUsage,
};

pub struct Health {
    /// Set once the Socket.IO namespaces exist and the public listener serves them.
    serving: AtomicBool,
    /// Set by SIGTERM: from then on the replica refuses to look ready or healthy.
    draining: AtomicBool,
    database: PgStore,
    /// Cluster mode only; set once the clients exist.
    redis: OnceLock<RedisClients>,
}

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub serving: bool,
    pub draining: bool,
    pub database: Check,
    /// `None` on a single replica (no Redis).
    pub redis: Option<Check>,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    fn from(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Self {
                ok: true,
                error: None,
            },
            Err(error) => Self {
                ok: false,
                error: Some(error),
            },
        }
    }
}

impl Health {
    pub fn new(database: PgStore) -> Self {
        Self {
            serving: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            database,
            redis: OnceLock::new(),
        }
    }

    pub fn set_redis(&self, redis: RedisClients) {
        let _ = self.redis.set(redis);
    }

    pub fn set_serving(&self) {
        self.serving.store(true, Ordering::SeqCst);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// `/healthz`: accepting connections.
    pub fn accepting(&self) -> bool {
        self.serving.load(Ordering::SeqCst) && !self.is_draining()
    }

    /// What `/metrics` reports of the dependencies: Redis connected (cluster mode only; not yet
    /// connecting counts as down) and the database pool.
    pub fn dependencies(&self, cluster: bool) -> (Option<bool>, PoolUsage) {
        let redis = cluster.then(|| self.redis.get().is_some_and(RedisClients::connected));
        (redis, self.database.usage())
    }

    /// `/readyz`: listeners bound and serving, database reachable, not draining. In cluster
    /// mode serving implies the adapter subscribed once; a later Redis outage is reported in
    /// `checks.redis` but keeps the replica ready: every replica shares that Redis, and taking
    /// them all out of rotation would refuse handshakes they can still complete
    /// (docs/operations.md, "Redis down").
    pub async fn readiness(&self, cluster: bool) -> Readiness {
        let database = Check::from(
            tokio::time::timeout(std::time::Duration::from_secs(2), self.database.ping())
                .await
                .map_err(|_| "timed out".to_string())
                .and_then(|r| r.map_err(|e| e.to_string())),
        );
        let redis = match (cluster, self.redis.get()) {
            (false, _) => None,
            (true, None) => Some(Check::from(Err("connecting".into()))),
            (true, Some(redis)) => Some(Check::from(redis.check().await)),
        };
        let serving = self.serving.load(Ordering::SeqCst);
        let draining = self.is_draining();
        Readiness {
            ready: serving && !draining && database.ok,
            serving,
            draining,
            database,
            redis,
        }
    }
}
