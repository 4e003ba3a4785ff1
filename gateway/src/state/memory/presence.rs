//! The memory engine's presence: sockets on live replicas, OFFLINE after the grace.

use super::*;
use crate::state::PresenceStore;

#[async_trait]
impl PresenceStore for MemoryState {
    async fn presence_opened(&self, driver: &str) -> Result<(), StateError> {
        let mut inner = self.lock();
        let record = inner.drivers.entry(driver.to_owned()).or_default();
        record.present = true;
        record.offline_at = None;
        Ok(())
    }

    async fn presence_closed(&self, driver: &str) -> Result<(), StateError> {
        let mut inner = self.lock();
        let record = inner.drivers.entry(driver.to_owned()).or_default();
        record.present = false;
        record.offline_at = Some(Instant::now() + self.settings.presence_grace);
        Ok(())
    }

    async fn presence_resync(&self, drivers: &[String]) -> Result<(), StateError> {
        let mut inner = self.lock();
        let offline_at = Instant::now() + self.settings.presence_grace;
        for (id, record) in inner.drivers.iter_mut() {
            let held = drivers.contains(id);
            if record.present && !held {
                record.offline_at = Some(offline_at);
            } else if held {
                record.offline_at = None;
            }
            record.present = held;
        }
        for driver in drivers {
            inner.drivers.entry(driver.clone()).or_default().present = true;
        }
        Ok(())
    }

    async fn is_present(&self, driver: &str) -> Result<bool, StateError> {
        Ok(self.lock().drivers.get(driver).is_some_and(|r| r.present))
    }

    async fn is_reachable(&self, driver: &str) -> Result<bool, StateError> {
        Ok(self
            .lock()
            .drivers
            .get(driver)
            .is_some_and(|r| r.present || r.offline_at.is_some()))
    }

    async fn expire_presence(&self, _reap_lapsed: bool) -> Result<Vec<StatusChange>, StateError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut changes = Vec::new();
        for (id, record) in &mut inner.drivers {
            if record.offline_at.is_some_and(|t| t <= now) {
                record.offline_at = None;
                if record.status.is_some_and(|s| s != DriverStatus::Offline) {
                    record.status = Some(DriverStatus::Offline);
                    changes.push(StatusChange {
                        driver_id: id.clone(),
                        status: DriverStatus::Offline,
                        at: now_rfc3339(),
                    });
                }
            }
        }
        inner.trips.retain(|_, (_, expires)| *expires > now);
        // Offers outlive their expiry a while, so a dispatch closing one late still finds it.
        let forget_before = crate::clock::now_ms().saturating_sub(OFFERS_KEPT_MS);
        inner.offers.retain(|_, held| {
            held.retain(|(o, _)| o.expires_at_ms > forget_before);
            !held.is_empty()
        });
        Ok(changes)
    }
}
