//! Driver presence on this replica, and the upkeep loop every replica runs: lease renewal with
//! socket counts, and presence expiry (drivers gone past their grace become OFFLINE).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use shared::{
    events::{DRIVER_STATUS_CHANGED, DriverStatusChanged},
    namespace::Namespace,
    rooms,
};
use tokio::sync::Mutex as AsyncMutex;

use super::Io;
use crate::state::{NodeStats, StateEngine, memory::SWEEP_EVERY};

/// Open sockets per driver on this replica. The state hears only the first open and the last
/// close; a per-driver lock keeps those two in order when a driver reconnects quickly.
#[derive(Default)]
pub struct LocalPresence {
    drivers: Mutex<HashMap<String, Arc<AsyncMutex<usize>>>>,
}

impl LocalPresence {
    fn counter(&self, driver: &str) -> Arc<AsyncMutex<usize>> {
        let mut drivers = self.drivers.lock().unwrap_or_else(|p| p.into_inner());
        drivers.entry(driver.to_owned()).or_default().clone()
    }

    pub async fn opened(&self, state: &dyn StateEngine, driver: &str) {
        let counter = self.counter(driver);
        let mut open = counter.lock().await;
        *open += 1;
        if *open == 1
            && let Err(error) = state.presence_opened(driver).await
        {
            tracing::error!(%error, driver, "presence not recorded");
        }
    }

    pub async fn closed(&self, state: &dyn StateEngine, driver: &str) {
        let counter = self.counter(driver);
        let mut open = counter.lock().await;
        *open = open.saturating_sub(1);
        if *open == 0
            && let Err(error) = state.presence_closed(driver).await
        {
            tracing::error!(%error, driver, "presence end not recorded");
        }
    }
}

/// Renews the lease every `renew_every` and expires presence every sweep, until aborted (drain).
pub fn spawn_upkeep(
    io: Io,
    state: Arc<dyn StateEngine>,
    node_id: String,
    node_ttl: Duration,
) -> tokio::task::JoinHandle<()> {
    // Renewing three times per lease survives two missed renewals; counts stay at most a
    // second old.
    let renew_every = (node_ttl / 3).min(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut last_renewal: Option<Instant> = None;
        let mut ticker = tokio::time::interval(SWEEP_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if last_renewal.is_none_or(|t| t.elapsed() >= renew_every) {
                let (drivers, passengers, admin) = io.local_counts();
                let stats = NodeStats {
                    node_id: node_id.clone(),
                    drivers,
                    passengers,
                    admin,
                };
                match state.renew_lease(&stats).await {
                    Ok(()) => last_renewal = Some(Instant::now()),
                    Err(error) => tracing::warn!(%error, "lease not renewed"),
                }
            }
            match state.expire_presence().await {
                Ok(changes) => {
                    for change in changes {
                        tracing::info!(driver = %change.driver_id, "driver offline: presence grace over");
                        let payload = DriverStatusChanged {
                            driver_id: change.driver_id,
                            status: change.status,
                            at: change.at,
                        };
                        let _ = io
                            .emit(
                                Namespace::Admin,
                                vec![rooms::ADMIN_ALL.into()],
                                DRIVER_STATUS_CHANGED,
                                &payload,
                            )
                            .await;
                    }
                }
                Err(error) => tracing::warn!(%error, "presence not swept"),
            }
        }
    })
}
