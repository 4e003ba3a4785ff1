//! Position reports to Redis in batches: one script call carries the reports that arrived while
//! earlier calls were in flight, applied in arrival order within the call. On a single Redis the
//! same call appends the accepted ones to the stream; on a Redis Cluster (where the stream is in
//! another slot) there is one call per driver shard of the batch, then one call for the stream.
//!
//! Per report, the Redis client's own work (encoding the call, routing, reading the reply) was
//! about half of the gateway's CPU for `driver:location` (callgrind, docs/performance-history.md).
//! Nothing waits for a timer: when the replica is quiet a batch holds one report and goes at once;
//! under load, batches grow by themselves while Redis answers the calls in flight.

use fred::{clients::Client, types::Value};
use futures::future::join_all;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{
    tasks::Tasks,
    telemetry::traces::{leaf, redis_span},
};

use crate::state::{
    ActiveTrip, LocationOutcome, Position, StateError,
    geo::MAX_INDEXED_LAT,
    keys::Keys,
    script::{Named, by_shard, text},
};

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
    /// On a cluster, one call per shard; on one Redis, one call per batch.
    pub clustered: bool,
}

struct Report {
    driver: String,
    /// The script's 8 values (driverId, lat, lng, heading, speed, accuracy, recordedAt, at),
    /// formatted once for both calls.
    values: [String; 8],
    answer: oneshot::Sender<Result<LocationOutcome, StateError>>,
}

/// Which of a report's values the stream keeps (all but the accuracy).
const STREAM_VALUES: [usize; 7] = [0, 1, 2, 3, 4, 6, 7];

fn values(driver: &str, p: &Position) -> [String; 8] {
    let optional = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    [
        driver.to_owned(),
        p.lat.to_string(),
        p.lng.to_string(),
        optional(p.heading),
        optional(p.speed),
        optional(p.accuracy),
        p.recorded_at.clone().unwrap_or_default(),
        p.at.clone(),
    ]
}

/// The handle handlers send reports through; the writer task ends when it is dropped.
pub struct LocationWriter {
    reports: mpsc::Sender<Report>,
}

impl LocationWriter {
    /// Starts the writer task (needs a Tokio runtime).
    pub fn spawn(client: Client, keys: LocationKeys, tasks: &Tasks) -> Self {
        let (reports, queue) = mpsc::channel(QUEUE);
        tasks.spawn(
            "location writer",
            write_batches(client, keys, queue, tasks.clone()),
        );
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
            values: values(driver, position),
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

async fn write_batches(
    client: Client,
    keys: LocationKeys,
    mut queue: mpsc::Receiver<Report>,
    tasks: Tasks,
) {
    let writer = Arc::new(BatchCall {
        client,
        keys,
        record: Named::new("record_locations", include_str!("lua/record_locations.lua")),
        append: Named::new("append_locations", include_str!("lua/append_locations.lua")),
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
        tasks.spawn("location batch", async move {
            writer.write(batch).await;
            drop(permit);
        });
    }
}

struct BatchCall {
    client: Client,
    keys: LocationKeys,
    record: Named,
    append: Named,
}

impl BatchCall {
    /// Stores the batch and appends what was accepted to the stream, in arrival order: one call
    /// on a single Redis; on a cluster one call per shard, then one for the stream. A report is
    /// answered once both are done.
    async fn write(&self, batch: Vec<Report>) {
        let stream_in_call = !self.keys.clustered && self.keys.stream_maxlen > 0;
        let batch: Vec<(usize, Report)> = batch.into_iter().enumerate().collect();
        let groups = by_shard(self.keys.clustered, batch, |(_, r)| &r.driver);
        let stored = join_all(
            groups
                .into_iter()
                .map(|group| self.store(group, stream_in_call)),
        )
        .await;
        let mut answered: Vec<(usize, Report, Result<LocationOutcome, StateError>)> =
            stored.into_iter().flatten().collect();
        answered.sort_by_key(|(arrival, ..)| *arrival);
        if self.keys.stream_maxlen > 0 && !stream_in_call {
            let accepted: Vec<&Report> = answered
                .iter()
                .filter(|(_, _, outcome)| matches!(outcome, Ok(LocationOutcome::Accepted { .. })))
                .map(|(_, report, _)| report)
                .collect();
            if !accepted.is_empty()
                && let Err(error) = self.append(&accepted).await
            {
                // Stored but not in the stream: the driver retries, and the retry gets there.
                for (_, _, outcome) in &mut answered {
                    if outcome.is_ok() {
                        *outcome = Err(error.clone());
                    }
                }
            }
        }
        for (_, report, outcome) in answered {
            let _ = report.answer.send(outcome);
        }
    }

    /// One script call for reports whose keys share a slot (and the stream, on a single Redis).
    async fn store(
        &self,
        group: Vec<(usize, Report)>,
        with_stream: bool,
    ) -> Vec<(usize, Report, Result<LocationOutcome, StateError>)> {
        let (redis_keys, args) =
            call_arguments(&self.keys, group.iter().map(|(_, r)| r), with_stream);
        let reply = self
            .record
            .run(&self.client, redis_keys, args)
            .await
            .map(Value::into_array);
        let outcomes: Vec<Result<LocationOutcome, StateError>> = match reply {
            Ok(values) if values.len() == 3 * group.len() => {
                values.chunks(3).map(|reply| Ok(outcome(reply))).collect()
            }
            Ok(_) => vec![
                Err(StateError::Data(
                    "the location script answered out of shape".into()
                ));
                group.len()
            ],
            // Every report of the call gets the error (the handlers answer UNAVAILABLE: retry).
            Err(error) => vec![Err(error); group.len()],
        };
        group
            .into_iter()
            .zip(outcomes)
            .map(|((arrival, report), outcome)| (arrival, report, outcome))
            .collect()
    }

    async fn append(&self, accepted: &[&Report]) -> Result<(), StateError> {
        let mut args = Vec::with_capacity(1 + STREAM_VALUES.len() * accepted.len());
        args.push(self.keys.stream_maxlen.to_string());
        for report in accepted {
            args.extend(STREAM_VALUES.map(|i| report.values[i].clone()));
        }
        self.append
            .run(&self.client, vec![self.keys.keys.driver_locations()], args)
            .await?;
        Ok(())
    }
}

fn call_arguments<'a>(
    keys: &LocationKeys,
    reports: impl ExactSizeIterator<Item = &'a Report>,
    with_stream: bool,
) -> (Vec<String>, Vec<String>) {
    let mut redis_keys = Vec::with_capacity(3 * reports.len() + 1);
    let mut args = Vec::with_capacity(3 + 8 * reports.len());
    args.extend([keys.rate_per_s.to_string(), MAX_INDEXED_LAT.to_string()]);
    for report in reports {
        let driver = &report.driver;
        redis_keys.extend([
            keys.keys.driver(driver),
            keys.keys.location_rate(driver),
            keys.keys.driver_geo(driver),
        ]);
        args.extend(report.values.iter().cloned());
    }
    if with_stream {
        redis_keys.push(keys.keys.driver_locations());
        args.push(keys.stream_maxlen.to_string());
    }
    (redis_keys, args)
}

/// One report's three reply values: stored or rate-limited, and the driver's active trip if any.
fn outcome(reply: &[Value]) -> LocationOutcome {
    if reply[0].as_i64() != Some(1) {
        return LocationOutcome::RateLimited;
    }
    LocationOutcome::Accepted {
        active_trip: text(&reply[1])
            .zip(text(&reply[2]))
            .map(|(trip_id, passenger_id)| ActiveTrip {
                trip_id,
                passenger_id,
            }),
    }
}
