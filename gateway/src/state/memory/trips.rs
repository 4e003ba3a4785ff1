//! The memory engine's trips, written compare-and-set.

use super::*;
use crate::state::TripStore;

#[async_trait]
impl TripStore for MemoryState {
    async fn trip(&self, trip_id: &str) -> Result<Option<Trip>, StateError> {
        let now = Instant::now();
        Ok(self
            .lock()
            .trips
            .get(trip_id)
            .filter(|(_, expires)| *expires > now)
            .map(|(t, _)| t.clone()))
    }

    async fn write_trip(&self, write: &TripWrite) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let stored = inner
            .trips
            .get(&write.trip_id)
            .filter(|(_, expires)| *expires > now)
            .map(|(t, _)| t.version);
        if stored != write.expected_version {
            return Ok(false);
        }
        let trip = Trip {
            status: write.status,
            passenger_id: write.passenger_id.clone(),
            driver_id: write.driver_id.clone(),
            version: stored.unwrap_or(0) + 1,
        };
        let ttl = self.settings.trip_ttl;
        inner.trips.insert(write.trip_id.clone(), (trip, now + ttl));
        for driver in &write.unbind {
            if let Some(r) = inner.drivers.get_mut(driver)
                && r.active_trip
                    .as_ref()
                    .is_some_and(|t| t.trip_id == write.trip_id)
            {
                r.active_trip = None;
            }
        }
        if let Some(driver) = &write.bind {
            inner.drivers.entry(driver.clone()).or_default().active_trip = Some(ActiveTrip {
                trip_id: write.trip_id.clone(),
                passenger_id: write.passenger_id.clone(),
            });
        }
        Ok(true)
    }
}
