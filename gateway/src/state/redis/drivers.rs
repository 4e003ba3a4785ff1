//! The Redis engine's drivers: status, positions, their state and the geo search.

use super::*;
use crate::state::DriverStore;

#[async_trait]
impl DriverStore for RedisState {
    async fn set_status(
        &self,
        driver: &str,
        status: DriverStatus,
        at: &str,
    ) -> Result<Option<DriverStatus>, StateError> {
        let previous = self
            .run(
                &self.scripts.set_status,
                vec![self.keys.driver(driver), self.keys.driver_geo(driver)],
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
                vec![self.keys.driver(driver), self.keys.presence(driver)],
                vec![],
            )
            .await?
            .into_array();
        if reply.first().and_then(Value::as_i64) != Some(1) {
            return Ok(None);
        }
        let field = |i: usize| reply.get(i + 1).and_then(text);
        let num = |i: usize| reply.get(i + 1).and_then(number);
        let nodes = reply.iter().skip(10).filter_map(text).collect();
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
            connected: self.any_live(nodes).await?,
            last_location,
            active_trip_id: field(8),
        }))
    }

    async fn drivers_nearby(&self, q: &NearbyQuery) -> Result<Vec<NearbyDriver>, StateError> {
        // Every shard's part of the index, at once; then the candidates' hashes, which say
        // whether each is still ONLINE (an index entry may lag its driver's status by a step).
        let searches = (0..DRIVER_SHARDS).map(|shard| {
            self.run(
                &self.scripts.geo_search,
                vec![self.keys.drivers_geo(shard)],
                vec![
                    q.lng.to_string(),
                    q.lat.to_string(),
                    q.radius_m.to_string(),
                    q.limit.to_string(),
                ],
            )
        });
        let mut candidates: Vec<(String, f64)> = try_join_all(searches)
            .await?
            .into_iter()
            .flat_map(|rows| {
                rows.into_array()
                    .chunks_exact(2)
                    .filter_map(|row| Some((text(&row[0])?, number(&row[1])?)))
                    .collect::<Vec<_>>()
            })
            .collect();
        candidates.sort_by(|a, b| a.1.total_cmp(&b.1));
        let reads = self
            .groups(candidates, |(d, _)| d)
            .into_iter()
            .map(|group| async move {
                let keys = group.iter().map(|(d, _)| self.keys.driver(d)).collect();
                let rows = self.run(&self.scripts.drivers_read, keys, vec![]).await?;
                Ok::<_, StateError>(
                    group
                        .into_iter()
                        .zip(rows.into_array().chunks_exact(4).map(<[Value]>::to_vec))
                        .filter_map(|((driver_id, distance_m), row)| {
                            (text(&row[0]).as_deref() == Some("ONLINE")).then_some(())?;
                            Some(NearbyDriver {
                                driver_id,
                                distance_m,
                                lat: number(&row[1])?,
                                lng: number(&row[2])?,
                                status: DriverStatus::Online,
                                at: text(&row[3]).unwrap_or_default(),
                            })
                        })
                        .collect::<Vec<_>>(),
                )
            });
        let mut found: Vec<NearbyDriver> = try_join_all(reads).await?.concat();
        found.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
        found.truncate(q.limit);
        Ok(found)
    }
}
