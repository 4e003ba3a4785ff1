//! The `StateEngine` contract: the same cases against the memory engine, a standalone Redis and
//! a local Redis Cluster of three masters, so that both engines and both topologies behave the
//! same, Lua reply parsing included. Cases about several replicas sharing state run where
//! replicas can share it (Redis, Cluster).

mod topology;

use std::time::{Duration, Instant};

use gateway::state::{
    ActiveTrip, LocationOutcome, NearbyQuery, NodeStats, Position, StateEngine, StateError,
    TripWrite,
};
use shared::{
    events::{DriverStatus, TripStatus},
    namespace::Namespace,
};
use topology::{Topology, World};

/// Every case, once per topology (`recovery` uses it too).
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory { $(#[tokio::test] async fn $case() { super::$case(super::World::new(super::Topology::Memory).await).await.expect("store calls succeed") })* }
        mod redis { $(#[tokio::test] async fn $case() { super::$case(super::World::new(super::Topology::Redis).await).await.expect("store calls succeed") })* }
        mod cluster { $(#[tokio::test] async fn $case() { super::$case(super::World::new(super::Topology::Cluster).await).await.expect("store calls succeed") })* }
    };
}

// After the macro: modules declared below see it. One module per concern of the store.
mod drivers;
mod leases;
mod limits;
mod offers;
mod presence;
mod recovery;
mod trips;

fn at(n: u32) -> String {
    format!("2026-12-02T08:00:{n:02}.000Z")
}

fn position(lat: f64, lng: f64, n: u32) -> Position {
    Position {
        lat,
        lng,
        heading: Some(90.0),
        speed: None,
        accuracy: Some(5.5),
        recorded_at: Some(at(n)),
        at: at(n),
    }
}

fn driver(world: &World, name: &str) -> String {
    // Unique per test on the shared memory engine too.
    format!("{}-{name}", &world.prefix[9..17])
}

/// Sweeps until a driver goes offline, or fails naming what it waited for.
async fn offline_within(engine: &dyn StateEngine, within: Duration, what: &str) -> Vec<String> {
    let start = Instant::now();
    loop {
        let changes = engine.expire_presence(true).await.expect("sweep");
        if !changes.is_empty() {
            return changes.into_iter().map(|c| c.driver_id).collect();
        }
        assert!(start.elapsed() < within, "waited {within:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sweeps for `period` and returns every change seen.
async fn sweep_for(engine: &dyn StateEngine, period: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < period {
        for change in engine.expire_presence(true).await.expect("sweep") {
            assert_eq!(change.status, DriverStatus::Offline);
            seen.push(change.driver_id);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}
