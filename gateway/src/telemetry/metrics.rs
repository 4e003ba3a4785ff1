//! Prometheus metrics (`GET /metrics`): the names of `docs/spec/telemetry.md`, recorded
//! through the `metrics` facade and rendered by `metrics-exporter-prometheus`.
//!
//! Counters and histograms are recorded where outcomes are decided (the handshake, the ack, the
//! internal API's error type, the auth-event path). Gauges that describe the replica now
//! (sockets, readiness, Redis, the database pool) are read when scraped, so they cannot drift.
//! No label ever names a user or a socket.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use shared::namespace::Namespace;

/// Seconds; resolves 0.5 ms to 10 s (telemetry.md).
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded in between scrapes (bounds their memory).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process-wide recorder, installed on first use.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once per process and returns its handle. A second recorder (another
/// crate's) would make `metrics` calls go elsewhere: then the error is logged and `/metrics`
/// serves an empty registry of our own.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(DURATION_BUCKETS)
            .expect("static non-empty buckets");
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            Err(error) => {
                tracing::error!(%error, "metrics recorder not installed");
                PrometheusBuilder::new().build_recorder().handle()
            }
        };
        describe();
        metrics_process::Collector::default().describe();
        gauge!("gateway_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        handle
    })
}

fn describe() {
    describe_gauge!("gateway_sockets", "Sockets connected to this replica now.");
    describe_counter!(
        "gateway_handshakes_total",
        "Finished handshakes by outcome."
    );
    describe_histogram!(
        "gateway_handshake_duration_seconds",
        Unit::Seconds,
        "CONNECT received to hello or connect_error sent."
    );
    describe_counter!("gateway_events_total", "Client events by outcome.");
    describe_histogram!(
        "gateway_event_duration_seconds",
        Unit::Seconds,
        "Client event received to ack sent."
    );
    describe_counter!(
        "gateway_emits_total",
        "Server to client emits this replica started (to a room, cluster-wide)."
    );
    describe_counter!(
        "gateway_internal_requests_total",
        "Internal API requests by route template and status."
    );
    describe_histogram!(
        "gateway_internal_request_duration_seconds",
        Unit::Seconds,
        "Internal API request duration."
    );
    describe_counter!(
        "gateway_auth_events_total",
        "Auth events applied on this replica."
    );
    describe_counter!(
        "gateway_session_disconnects_total",
        "Sockets this replica disconnected on purpose."
    );
    describe_histogram!(
        "gateway_revocation_apply_seconds",
        Unit::Seconds,
        "Auth event received on this replica to its local sockets of that session disconnected."
    );
    describe_counter!(
        "gateway_session_revalidations_total",
        "Rounds of session re-validation against PostgreSQL: ok, or skipped while it is down."
    );
    describe_counter!(
        "gateway_session_revalidated_total",
        "Sessions re-checked by re-validation."
    );
    describe_counter!(
        "gateway_session_revalidation_invalid_total",
        "Sessions re-validation found revoked, gone, of another user or expired."
    );
    describe_histogram!(
        "gateway_session_revalidation_seconds",
        Unit::Seconds,
        "One round of re-validation (its batched queries)."
    );
    describe_counter!("gateway_offers_total", "Trip offers by outcome.");
    describe_counter!(
        "gateway_offer_redeliveries_total",
        "Open trip offers sent again to a driver's socket that connected while they were open."
    );
    describe_gauge!(
        "gateway_redis_up",
        "1 while this replica's Redis clients are connected (cluster mode only)."
    );
    describe_counter!(
        "gateway_redis_errors_total",
        "Failed Redis operations by operation."
    );
    describe_gauge!(
        "gateway_db_pool_connections",
        "PostgreSQL pool connections by state."
    );
    describe_gauge!("gateway_db_pool_max", "PostgreSQL pool size limit.");
    describe_counter!(
        "gateway_emits_dropped_total",
        "Sockets of this replica that could not queue an emit (send buffer full); each had its transport closed."
    );
    describe_counter!(
        "gateway_recoveries_total",
        "Handshakes that asked to recover missed events (auth.offset), by outcome: recovered or not (offset unknown, expired, malformed, or the log unavailable)."
    );
    describe_counter!(
        "gateway_recovery_replayed_total",
        "Missed events replayed to reconnecting sockets."
    );
    describe_counter!(
        "gateway_adapter_messages_lost_total",
        "Cross-replica messages (emits, adapter requests) this replica's Redis adapter lost: lagged (behind Redis pub/sub) or buffer_full (a channel's stream buffer); cluster mode only."
    );
    describe_counter!(
        "gateway_connections_refused_total",
        "Connections closed on arrival because the listener held its cap (MAX_CONNECTIONS)."
    );
    describe_gauge!("gateway_ready", "1 while /readyz answers 200.");
    describe_gauge!("gateway_build_info", "Always 1; the version is a label.");
}

/// The `namespace` label: the path without its slash.
pub fn namespace(ns: Namespace) -> &'static str {
    &ns.path()[1..]
}

pub fn handshake(ns: Namespace, outcome: &'static str, started: Instant) {
    let ns = namespace(ns);
    counter!("gateway_handshakes_total", "namespace" => ns, "outcome" => outcome).increment(1);
    metrics::histogram!("gateway_handshake_duration_seconds", "namespace" => ns)
        .record(started.elapsed());
}

/// A client event with a handler; `outcome` is `ok` or the ack error code in lower case.
pub fn event(ns: Namespace, event: &'static str, outcome: &'static str, started: Instant) {
    let ns = namespace(ns);
    counter!("gateway_events_total", "namespace" => ns, "event" => event, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("gateway_event_duration_seconds", "namespace" => ns, "event" => event)
        .record(started.elapsed());
}

/// An event no handler knows: one label value for all of them (names are client-chosen).
pub fn unknown_event(ns: Namespace) {
    counter!(
        "gateway_events_total",
        "namespace" => namespace(ns), "event" => "unknown", "outcome" => UNKNOWN_EVENT_OUTCOME
    )
    .increment(1);
}

/// Unknown events get no ack: their outcome is `ignored` (docs/decisions.md).
pub const UNKNOWN_EVENT_OUTCOME: &str = "ignored";

pub fn emit(ns: Namespace, event: &str) {
    counter!("gateway_emits_total", "namespace" => namespace(ns), "event" => event.to_owned())
        .increment(1);
}

pub fn internal_request(route: &str, status: u16, started: Instant) {
    let route = route.to_owned();
    counter!("gateway_internal_requests_total", "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("gateway_internal_request_duration_seconds", "route" => route)
        .record(started.elapsed());
}

/// Where an auth event came from: the internal API of this replica, or the Redis channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthEventSource {
    Http,
    Redis,
}

impl AuthEventSource {
    pub fn label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Redis => "redis",
        }
    }
}

pub fn auth_event_applied(kind: &'static str, source: AuthEventSource, received: Instant) {
    counter!("gateway_auth_events_total", "type" => kind, "source" => source.label()).increment(1);
    metrics::histogram!("gateway_revocation_apply_seconds").record(received.elapsed());
}

/// Why this replica disconnected sockets on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    Revoked,
    Refreshed,
    Admin,
    Drain,
    /// The socket's token or session expired (`auth:expired`).
    Expired,
    /// One socket too many for its user (`auth:connection_replaced`).
    Replaced,
    /// A client kept sending CONNECT on one connection after refusals: its transport was closed.
    ConnectFlood,
}

impl DisconnectReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Refreshed => "refreshed",
            Self::Admin => "admin",
            Self::Drain => "drain",
            Self::Expired => "expired",
            Self::Replaced => "replaced",
            Self::ConnectFlood => "connect_flood",
        }
    }
}

/// One round of session re-validation: `ok` (`invalid` sessions found and revoked) or
/// `skipped` (PostgreSQL down), with how long its queries took.
pub fn revalidation(outcome: &'static str, sessions: usize, invalid: usize, started: Instant) {
    counter!("gateway_session_revalidations_total", "outcome" => outcome).increment(1);
    counter!("gateway_session_revalidated_total").increment(sessions as u64);
    counter!("gateway_session_revalidation_invalid_total").increment(invalid as u64);
    histogram!("gateway_session_revalidation_seconds").record(started.elapsed().as_secs_f64());
}

pub fn session_disconnects(reason: DisconnectReason, sockets: usize) {
    if sockets > 0 {
        counter!("gateway_session_disconnects_total", "reason" => reason.label())
            .increment(sockets as u64);
    }
}

/// The outcome of a trip offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferOutcome {
    Answered,
    NoSocket,
    Timeout,
}

pub fn offer(outcome: OfferOutcome) {
    let outcome = match outcome {
        OfferOutcome::Answered => "answered",
        OfferOutcome::NoSocket => "no_socket",
        OfferOutcome::Timeout => "timeout",
    };
    counter!("gateway_offers_total", "outcome" => outcome).increment(1);
}

/// An open offer sent to a driver's socket that connected while it was open.
pub fn offer_redelivered() {
    counter!("gateway_offer_redeliveries_total").increment(1);
}

/// Sockets of this replica that could not queue an emit (send buffer full; their transports
/// were closed).
/// Recoverable events this replica's feed skipped because it fell behind Redis pub/sub.
pub fn recovery_feed_lagged(lost: u64) {
    counter!("gateway_adapter_messages_lost_total", "reason" => "recovery_lagged").increment(lost);
}

/// A socket that may have missed kept events after a hole in the feed, or while it connected:
/// its transport was closed so it reconnects, not recovered.
pub fn recovery_gap(ns: Namespace, reason: &'static str) {
    counter!("gateway_recovery_gaps_total", "namespace" => namespace(ns), "reason" => reason)
        .increment(1);
}

/// A connected socket caught up after a hole in the feed: `replayed` entries it had missed.
pub fn recovery_caught_up(ns: Namespace, replayed: usize) {
    counter!("gateway_recovery_catch_ups_total", "namespace" => namespace(ns)).increment(1);
    counter!("gateway_recovery_replayed_total", "namespace" => namespace(ns))
        .increment(replayed as u64);
}

/// A socket's replay (recovery.md); `first`: the client had no offset yet (`""`).
pub fn recovery(ns: Namespace, recovered: bool, first: bool, replayed: usize) {
    let outcome = match (recovered, first) {
        (true, _) => "recovered",
        (false, true) => "first",
        (false, false) => "not_recovered",
    };
    counter!("gateway_recoveries_total", "namespace" => namespace(ns), "outcome" => outcome)
        .increment(1);
    counter!("gateway_recovery_replayed_total", "namespace" => namespace(ns))
        .increment(replayed as u64);
}

pub fn emits_dropped(ns: Namespace, sockets: usize) {
    counter!("gateway_emits_dropped_total", "namespace" => namespace(ns)).increment(sockets as u64);
}

/// A connection closed on arrival: `listener` (`public`, `internal`) held its cap.
pub fn connection_refused(listener: &'static str) {
    counter!("gateway_connections_refused_total", "listener" => listener).increment(1);
}

/// A failed Redis operation: `adapter_emit`, `adapter_disconnect`, `state`, `publish`, ...
pub fn redis_error(operation: &'static str) {
    counter!("gateway_redis_errors_total", "operation" => operation).increment(1);
}

/// What a scrape reads off the replica at that moment.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    /// (drivers, passengers, admin) sockets on this replica.
    pub sockets: (u64, u64, u64),
    pub ready: bool,
    /// `None` on a single replica (the gauge exists in cluster mode only).
    pub redis_up: Option<bool>,
    pub pool: PoolUsage,
}

/// The PostgreSQL pool at one moment.
#[derive(Debug, Default, Clone, Copy)]
pub struct PoolUsage {
    pub idle: usize,
    pub in_use: usize,
    pub max: usize,
}

/// The Prometheus text exposition, with the gauges of `now` set first.
pub fn render(now: Snapshot) -> String {
    let handle = install();
    let (drivers, passengers, admin) = now.sockets;
    for (ns, n) in [
        (Namespace::Drivers, drivers),
        (Namespace::Passengers, passengers),
        (Namespace::Admin, admin),
    ] {
        gauge!("gateway_sockets", "namespace" => namespace(ns)).set(n as f64);
    }
    gauge!("gateway_ready").set(f64::from(u8::from(now.ready)));
    if let Some(up) = now.redis_up {
        gauge!("gateway_redis_up").set(f64::from(u8::from(up)));
        // Counted by the adapter's driver (vendored patch, vendor/README.md).
        use socketioxide_redis::drivers::fred::lost;
        counter!("gateway_adapter_messages_lost_total", "reason" => "lagged")
            .absolute(lost::lagged());
        counter!("gateway_adapter_messages_lost_total", "reason" => "buffer_full")
            .absolute(lost::buffer_full());
    }
    gauge!("gateway_db_pool_connections", "state" => "idle").set(now.pool.idle as f64);
    gauge!("gateway_db_pool_connections", "state" => "in_use").set(now.pool.in_use as f64);
    gauge!("gateway_db_pool_max").set(now.pool.max as f64);
    metrics_process::Collector::default().collect();
    handle.render()
}
