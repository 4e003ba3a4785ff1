//! The Redis engine's trips, written compare-and-set.

use super::*;
use crate::state::TripStore;

#[async_trait]
impl TripStore for RedisState {
    async fn trip(&self, trip_id: &str) -> Result<Option<Trip>, StateError> {
        let reply = self
            .run(&self.read_trip, vec![self.keys.trip(trip_id)], vec![])
            .await?
            .into_array();
        let field = |i: usize| reply.get(i).and_then(text);
        // A writer that stored the trip but not its driver bindings (Redis failed between the
        // steps): the reader finishes them, so the retry of that event repairs what it left.
        if let Some(left) = field(4) {
            self.apply_bindings(&left).await?;
        }
        let (Some(status), Some(passenger_id), Some(version)) = (
            field(0).and_then(|s| TripStatus::parse(&s)),
            field(1),
            field(3).and_then(|v| v.parse().ok()),
        ) else {
            return Ok(None);
        };
        Ok(Some(Trip {
            status,
            passenger_id,
            driver_id: field(2),
            version,
        }))
    }

    async fn write_trip(&self, w: &TripWrite) -> Result<bool, StateError> {
        let bindings = Bindings::of(w)
            .map(|b| serde_json::to_string(&b))
            .transpose()
            .map_err(|e| StateError::Data(e.to_string()))?
            .unwrap_or_default();
        let reply = self
            .run(
                &self.scripts.write_trip,
                vec![self.keys.trip(&w.trip_id)],
                vec![
                    w.expected_version
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    w.status.as_str().into(),
                    w.passenger_id.clone(),
                    w.driver_id.clone().unwrap_or_default(),
                    self.settings.trip_ttl.as_secs().max(1).to_string(),
                    bindings.clone(),
                ],
            )
            .await?
            .into_array();
        if reply.first().and_then(Value::as_i64) != Some(1) {
            return Ok(false);
        }
        // What an earlier writer left unfinished comes first: it is older.
        if let Some(left) = reply.get(1).and_then(text) {
            self.apply_bindings(&left).await?;
        }
        if !bindings.is_empty() {
            self.apply_bindings(&bindings).await?;
        }
        Ok(true)
    }
}
