//! Position reports to Redis in batches: one script call carries the reports that arrived while
//! earlier calls were in flight, applied in arrival order within the call.
//!
//! Per report, the Redis client's own work (encoding the call, routing, reading the reply) was
//! about half of the gateway's CPU for `driver:location` (callgrind, docs/benchmarks-notes.md).
//! Nothing waits for a timer: when the replica is quiet a batch holds one report and goes at once;
//! under load, batches grow by themselves while Redis answers the calls in flight.

use fred::{
    clients::Client,
    interfaces::ClientLike,
    types::{Value, scripts::Script},
};
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::telemetry::traces::{leaf, redis_span};

use super::{ActiveTrip, LocationOutcome, Position, StateError, geo::MAX_INDEXED_LAT, keys::Keys};

/// Reports per script call at most (keeps each call short for everything else on Redis).
const MAX_BATCH: usize = 256;
/// Reports waiting for the writer before handlers wait too (backpressure, not loss).
const QUEUE: usize = 8192;
/// Script calls in flight at once: while Redis is away each call waits out the command timeout,
/// and the next batches must not queue behind it.
const MAX_IN_FLIGHT: usize = 8;

/// What the writer needs to name keys and apply the limits.
pub struct LocationKeys {
    pub keys: Keys,
    pub rate_per_s: u32,
    pub stream_maxlen: u64,
}

struct Report {
    driver: String,
    position: Position,
    answer: oneshot::Sender<Result<LocationOutcome, StateError>>,
}

/// The handle handlers send reports through; the writer task ends when it is dropped.
pub struct LocationWriter {
    reports: mpsc::Sender<Report>,
}

impl LocationWriter {
    /// Starts the writer task (needs a Tokio runtime).
    pub fn spawn(client: Client, keys: LocationKeys) -> Self {
        let (reports, queue) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(client, keys, queue));
        Self { reports }
    }

    pub async fn record(
        &self,
        driver: &str,
        position: &Position,
    ) -> Result<LocationOutcome, StateError> {
        let (answer, outcome) = oneshot::channel();
        let report = Report {
            driver: driver.to_owned(),
            position: position.clone(),
            answer,
        };
        let stopped = || StateError::Stopped("the location writer stopped");
        // The script call itself is batched with other drivers' reports; the span is this
        // report's wait for it.
        let wait = async {
            self.reports.send(report).await.map_err(|_| stopped())?;
            outcome.await.map_err(|_| stopped())?
        };
        leaf(redis_span("EVALSHA", "record_location"), wait).await
    }
}

async fn write_batches(client: Client, keys: LocationKeys, mut queue: mpsc::Receiver<Report>) {
    let writer = Arc::new(BatchCall {
        client,
        keys,
        script: Script::from_lua(include_str!("lua/record_location.lua")),
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        // Wait for room first, so reports keep gathering into the next batch meanwhile.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let writer = writer.clone();
        tokio::spawn(async move {
            writer.write(batch).await;
            drop(permit);
        });
    }
}

struct BatchCall {
    client: Client,
    keys: LocationKeys,
    script: Script,
}

impl BatchCall {
    async fn write(&self, mut batch: Vec<Report>) {
        if !self.client.is_connected() {
            // fred would hold the call until it reconnects: answer now.
            return fail(&mut batch, &StateError::Unavailable);
        }
        let (redis_keys, args) = call_arguments(&self.keys, &batch);
        let reply = self
            .script
            .evalsha_with_reload::<Value, _, _>(&self.client, redis_keys, args)
            .await;
        match reply {
            Ok(reply) => {
                let values = reply.into_array();
                if values.len() == 3 * batch.len() {
                    for (report, reply) in batch.drain(..).zip(values.chunks(3)) {
                        let _ = report.answer.send(Ok(outcome(reply)));
                    }
                } else {
                    fail(
                        &mut batch,
                        &StateError::Data("the location script answered out of shape".into()),
                    );
                }
            }
            Err(error) => fail(&mut batch, &error.into()),
        }
    }
}

/// Every report of the batch gets the error (the handlers answer `UNAVAILABLE`: retry).
fn fail(batch: &mut Vec<Report>, error: &StateError) {
    for report in batch.drain(..) {
        let _ = report.answer.send(Err(error.clone()));
    }
}

fn call_arguments(keys: &LocationKeys, batch: &[Report]) -> (Vec<String>, Vec<String>) {
    let mut redis_keys = Vec::with_capacity(2 + 2 * batch.len());
    redis_keys.push(keys.keys.drivers_geo());
    redis_keys.push(keys.keys.driver_locations());
    let mut args = Vec::with_capacity(3 + 8 * batch.len());
    args.push(keys.rate_per_s.to_string());
    args.push(keys.stream_maxlen.to_string());
    args.push(MAX_INDEXED_LAT.to_string());
    let optional = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for Report {
        driver,
        position: p,
        ..
    } in batch
    {
        redis_keys.push(keys.keys.driver(driver));
        redis_keys.push(keys.keys.location_rate(driver));
        args.extend([
            driver.clone(),
            p.lat.to_string(),
            p.lng.to_string(),
            optional(p.heading),
            optional(p.speed),
            optional(p.accuracy),
            p.recorded_at.clone().unwrap_or_default(),
            p.at.clone(),
        ]);
    }
    (redis_keys, args)
}

/// One report's three reply values: stored or rate-limited, and the driver's active trip if any.
fn outcome(reply: &[Value]) -> LocationOutcome {
    if reply[0].as_i64() != Some(1) {
        return LocationOutcome::RateLimited;
    }
    let text = |v: &Value| v.as_string().filter(|s| !s.is_empty());
    LocationOutcome::Accepted {
        active_trip: text(&reply[1])
            .zip(text(&reply[2]))
            .map(|(trip_id, passenger_id)| ActiveTrip {
                trip_id,
                passenger_id,
            }),
    }
}
