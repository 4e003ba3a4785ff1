//! Driver presence on this replica, and the upkeep loop every replica runs: lease renewal with
//! socket counts, presence expiry (drivers gone past their grace become OFFLINE), and re-assertion
//! of this replica's drivers after the state store lost track of them.
//!
//! The replica's own sockets are the truth; the state store holds a copy. The copy goes stale when
//! a presence change cannot be written (Redis down or not answering), when another replica reaped
//! this one's lapsed lease during a long outage, or when Redis came back empty. Each of these
//! marks presence for re-assertion: the next lease renewal that succeeds replaces this replica's
//! drivers in the store with the ones it holds, so every connected driver is reachable again
//! within a renewal period and one who left during the outage starts the grace.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use shared::events::{DRIVER_STATUS_CHANGED, DriverStatusChanged};
use tokio::sync::{Mutex as AsyncMutex, RwLock};

use super::deliver::Recipient;
use super::io::{Delivery, Io};
use crate::{
    state::{NodeStats, StateEngine, memory::SWEEP_EVERY},
    telemetry::metrics,
};

/// How long a handshake waits for its presence to be recorded: past it the socket says hello
/// anyway and the upkeep re-asserts it (a frozen Redis must not hold handshakes).
const OPEN_BOUND: Duration = Duration::from_millis(250);

/// Open sockets per driver on this replica. The state hears only the first open and the last
/// close; a per-driver lock keeps those two in order when a driver reconnects quickly.
pub struct LocalPresence {
    state: Arc<dyn StateEngine>,
    drivers: Mutex<HashMap<String, Arc<AsyncMutex<usize>>>>,
    /// Set when the store's copy may differ from `drivers`.
    stale: AtomicBool,
    /// Opens and closes share it; a re-assertion takes it alone, so no change slips between its
    /// snapshot and its write.
    resync: RwLock<()>,
}

impl LocalPresence {
    pub fn new(state: Arc<dyn StateEngine>) -> Self {
        Self {
            state,
            drivers: Mutex::default(),
            stale: AtomicBool::new(false),
            resync: RwLock::new(()),
        }
    }

    fn drivers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AsyncMutex<usize>>>> {
        self.drivers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counter(&self, driver: &str) -> Arc<AsyncMutex<usize>> {
        self.drivers().entry(driver.to_owned()).or_default().clone()
    }

    pub async fn opened(&self, driver: &str) {
        let _shared = self.resync.read().await;
        let counter = self.counter(driver);
        let mut open = counter.lock().await;
        *open += 1;
        if *open == 1 {
            let recorded = tokio::time::timeout(OPEN_BOUND, self.state.presence_opened(driver));
            match recorded.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => self.lost(driver, "presence_opened", &error.to_string()),
                Err(_) => self.lost(driver, "presence_opened", "state too slow"),
            }
        }
    }

    pub async fn closed(&self, driver: &str) {
        let _shared = self.resync.read().await;
        let counter = self.counter(driver);
        let mut open = counter.lock().await;
        *open = open.saturating_sub(1);
        if *open == 0 {
            if let Err(error) = self.state.presence_closed(driver).await {
                self.lost(driver, "presence_closed", &error.to_string());
            }
            // The entry goes with the last socket (a later open makes a new one).
            drop(open);
            let mut drivers = self.drivers();
            if drivers
                .get(driver)
                .is_some_and(|c| Arc::ptr_eq(c, &counter) && Arc::strong_count(c) == 2)
            {
                drivers.remove(driver);
            }
        }
    }

    fn lost(&self, driver: &str, operation: &'static str, error: &str) {
        self.stale.store(true, Ordering::SeqCst);
        metrics::redis_error(operation);
        tracing::warn!(
            driver,
            error,
            "presence change not recorded; re-asserted once the state answers"
        );
    }

    /// Writes this replica's drivers over the store's copy when it may be stale (or `force`).
    async fn reassert(&self, force: bool) {
        if !force && !self.stale.load(Ordering::SeqCst) {
            return;
        }
        let _alone = self.resync.write().await;
        self.stale.store(false, Ordering::SeqCst);
        let held: Vec<String> = {
            let drivers = self.drivers();
            drivers
                .iter()
                .filter(|(_, open)| open.try_lock().map_or(true, |n| *n > 0))
                .map(|(driver, _)| driver.clone())
                .collect()
        };
        match self.state.presence_resync(&held).await {
            Ok(()) => tracing::info!(drivers = held.len(), "presence re-asserted"),
            Err(error) => {
                self.stale.store(true, Ordering::SeqCst);
                metrics::redis_error("presence_resync");
                tracing::warn!(%error, "presence not re-asserted; retrying");
            }
        }
    }
}

/// Renews the lease every `renew_every`, re-asserts presence when the store lost track of it,
/// and expires presence every sweep, until the drain stops it.
pub async fn upkeep(
    delivery: Delivery,
    presence: Arc<LocalPresence>,
    node_id: String,
    node_ttl: Duration,
) {
    // Renewing three times per lease survives two missed renewals; counts stay at most a
    // second old.
    let renew_every = (node_ttl / 3).min(Duration::from_secs(1));
    let mut lease = Lease {
        node_id,
        last_renewal: None,
        in_contact_since: None,
    };
    let mut ticker = tokio::time::interval(SWEEP_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if lease
            .last_renewal
            .is_none_or(|t| t.elapsed() >= renew_every)
        {
            lease.renew(&presence, &delivery.io).await;
        }
        let reap_lapsed = lease
            .in_contact_since
            .is_some_and(|t| t.elapsed() >= node_ttl);
        match presence.state.expire_presence(reap_lapsed).await {
            Ok(changes) => {
                for change in changes {
                    tracing::info!(driver = %change.driver_id, "driver offline: presence grace over");
                    let payload = DriverStatusChanged {
                        driver_id: change.driver_id,
                        status: change.status,
                        at: change.at,
                    };
                    let _ = delivery
                        .send(&Recipient::Admins, DRIVER_STATUS_CHANGED, &payload)
                        .await;
                }
            }
            Err(error) => {
                lease.in_contact_since = None;
                tracing::warn!(%error, "presence not swept");
            }
        }
    }
}

/// This replica's lease, as its upkeep keeps it.
struct Lease {
    node_id: String,
    last_renewal: Option<Instant>,
    /// Since when every call to the store succeeded. A lease that lapsed while this replica
    /// could not reach the store either may belong to a live replica that could not renew (a
    /// shared outage): reap only after a whole lease period of contact, by which time every
    /// live replica has renewed.
    in_contact_since: Option<Instant>,
}

impl Lease {
    /// Renews the lease with this replica's socket counts; re-asserts presence when the store
    /// had lost track of it.
    async fn renew(&mut self, presence: &LocalPresence, io: &Io) {
        let (drivers, passengers, admin) = io.local_counts();
        let stats = NodeStats {
            node_id: self.node_id.clone(),
            drivers,
            passengers,
            admin,
        };
        match presence.state.renew_lease(&stats).await {
            Ok(was_live) => {
                self.in_contact_since.get_or_insert_with(Instant::now);
                if !was_live && self.last_renewal.is_some() {
                    tracing::info!(
                        "lease was gone (reaped, or Redis lost its data); re-asserting presence"
                    );
                }
                self.last_renewal = Some(Instant::now());
                presence.reassert(!was_live).await;
            }
            Err(error) => {
                self.in_contact_since = None;
                presence.stale.store(true, Ordering::SeqCst);
                tracing::warn!(%error, "lease not renewed");
            }
        }
    }
}
