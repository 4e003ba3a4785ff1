//! Driver presence on this replica, and the upkeep loop every replica runs: lease renewal with
//! socket counts, presence expiry (drivers gone past their grace become OFFLINE), and re-assertion
//! of this replica's drivers after the state store lost track of them.
//!
//! The replica's own sockets are the truth; the state store holds a copy. The copy goes stale when
//! a presence change cannot be written (Redis down or not answering), when another replica reaped
//! this one's lapsed lease during a long outage or a partition, or when Redis came back empty.
//! Each of these marks presence for re-assertion: the next lease renewal that succeeds replaces
//! this replica's drivers in the store with the ones it holds, so every connected driver is
//! reachable again within a renewal period and one who left during the outage starts the grace.
//! When the lease itself was gone (reaped: its drivers were turned OFFLINE, as dispatch could not
//! reach them; or Redis lost it), each connected driver also gets back the status it last set
//! through this replica: a partition must not leave a connected driver OFFLINE.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use shared::events::{DRIVER_STATUS_CHANGED, DriverStatus, DriverStatusChanged};
use tokio::sync::{Mutex as AsyncMutex, RwLock};

use super::deliver::Recipient;
use super::io::Delivery;
use crate::{
    clock::now_rfc3339,
    state::{NodeStats, StateEngine, StateError, memory::SWEEP_EVERY},
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
    /// The status each driver held here last set (and the store took), restored after a reap.
    statuses: Mutex<HashMap<String, DriverStatus>>,
    /// Set when the store's copy may differ from `drivers`.
    stale: AtomicBool,
    /// Set when the lease was gone, until every held driver's status is restored.
    restore_pending: AtomicBool,
    /// Opens and closes share it; a re-assertion takes it alone, so no change slips between its
    /// snapshot and its write.
    resync: RwLock<()>,
}

impl LocalPresence {
    pub fn new(state: Arc<dyn StateEngine>) -> Self {
        Self {
            state,
            drivers: Mutex::default(),
            statuses: Mutex::default(),
            stale: AtomicBool::new(false),
            restore_pending: AtomicBool::new(false),
            resync: RwLock::new(()),
        }
    }

    fn drivers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AsyncMutex<usize>>>> {
        self.drivers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn statuses(&self) -> std::sync::MutexGuard<'_, HashMap<String, DriverStatus>> {
        self.statuses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A driver's `driver:status`: stored, and remembered for a restore after a reap. Under the
    /// re-assertion's lock, so a restore never writes over a newer choice.
    pub async fn set_status(
        &self,
        driver: &str,
        status: DriverStatus,
        at: &str,
    ) -> Result<Option<DriverStatus>, StateError> {
        let _shared = self.resync.read().await;
        let previous = self.state.set_status(driver, status, at).await?;
        self.statuses().insert(driver.to_owned(), status);
        Ok(previous)
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
                self.statuses().remove(driver);
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

    /// Writes this replica's drivers over the store's copy when it may be stale; when the lease
    /// was gone (`lease_lost`), gives each of them back the status it last set here.
    async fn reassert(&self, lease_lost: bool, delivery: &Delivery) {
        if lease_lost {
            self.restore_pending.store(true, Ordering::SeqCst);
        }
        let restore = self.restore_pending.load(Ordering::SeqCst);
        if !restore && !self.stale.load(Ordering::SeqCst) {
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
                return;
            }
        }
        if restore {
            self.restore_statuses(&held, delivery).await;
        }
    }

    /// Sets each held driver's last status again (a reap turned it OFFLINE, or Redis lost it),
    /// and tells the admins of each change, as the reap did.
    async fn restore_statuses(&self, held: &[String], delivery: &Delivery) {
        let known: Vec<(String, DriverStatus)> = {
            let statuses = self.statuses();
            held.iter()
                .filter_map(|d| statuses.get(d).map(|s| (d.clone(), *s)))
                .filter(|(_, status)| *status != DriverStatus::Offline)
                .collect()
        };
        self.restore_pending.store(false, Ordering::SeqCst);
        let mut restored = 0usize;
        for (driver, status) in known {
            let at = now_rfc3339();
            match self.state.set_status(&driver, status, &at).await {
                Ok(previous) if previous != Some(status) => {
                    restored += 1;
                    let change = DriverStatusChanged {
                        driver_id: driver,
                        status,
                        at,
                    };
                    let _ = delivery
                        .send(&Recipient::Admins, DRIVER_STATUS_CHANGED, &change)
                        .await;
                }
                Ok(_) => {}
                Err(error) => {
                    // The next renewal tries again.
                    self.restore_pending.store(true, Ordering::SeqCst);
                    metrics::redis_error("status_restore");
                    tracing::warn!(%error, driver, "driver status not restored; retrying");
                }
            }
        }
        tracing::info!(
            restored,
            "driver statuses restored after the lease was lost"
        );
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
            lease.renew(&presence, &delivery).await;
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
    async fn renew(&mut self, presence: &LocalPresence, delivery: &Delivery) {
        let (drivers, passengers, admin) = delivery.io.local_counts();
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
                presence.reassert(!was_live, delivery).await;
            }
            Err(error) => {
                self.in_contact_since = None;
                presence.stale.store(true, Ordering::SeqCst);
                tracing::warn!(%error, "lease not renewed");
            }
        }
    }
}
