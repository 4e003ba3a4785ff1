//! The memory engine's drivers: status, positions, their state and the geo search.

use super::*;
use crate::state::DriverStore;

#[async_trait]
impl DriverStore for MemoryState {
    async fn set_status(
        &self,
        driver: &str,
        status: DriverStatus,
        _at: &str,
    ) -> Result<Option<DriverStatus>, StateError> {
        let mut inner = self.lock();
        let record = inner.drivers.entry(driver.to_owned()).or_default();
        Ok(record.status.replace(status))
    }

    async fn record_location(
        &self,
        driver: &str,
        position: &Position,
    ) -> Result<LocationOutcome, StateError> {
        let mut inner = self.lock();
        let record = inner.drivers.entry(driver.to_owned()).or_default();
        let second = unix_secs();
        if record.window.0 == second {
            record.window.1 += 1;
        } else {
            record.window = (second, 1);
        }
        if record.window.1 > self.settings.location_rate_per_s {
            return Ok(LocationOutcome::RateLimited);
        }
        record.position = Some(position.clone());
        Ok(LocationOutcome::Accepted {
            active_trip: record.active_trip.clone(),
        })
    }

    async fn driver_state(&self, driver: &str) -> Result<Option<DriverState>, StateError> {
        let inner = self.lock();
        Ok(inner.drivers.get(driver).map(|r| DriverState {
            status: r.status.unwrap_or(DriverStatus::Offline),
            connected: r.present,
            last_location: r.position.clone(),
            active_trip_id: r.active_trip.as_ref().map(|t| t.trip_id.clone()),
        }))
    }

    async fn drivers_nearby(&self, query: &NearbyQuery) -> Result<Vec<NearbyDriver>, StateError> {
        let inner = self.lock();
        let mut found: Vec<NearbyDriver> = inner
            .drivers
            .iter()
            .filter(|(_, r)| r.status == Some(DriverStatus::Online))
            .filter_map(|(id, r)| {
                let p = r.position.as_ref().filter(|p| geo::indexable(p.lat))?;
                let distance_m = geo::distance_m(query.lat, query.lng, p.lat, p.lng);
                (distance_m <= query.radius_m).then(|| NearbyDriver {
                    driver_id: id.clone(),
                    lat: p.lat,
                    lng: p.lng,
                    distance_m,
                    status: DriverStatus::Online,
                    at: p.at.clone(),
                })
            })
            .collect();
        found.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
        found.truncate(query.limit);
        Ok(found)
    }
}
