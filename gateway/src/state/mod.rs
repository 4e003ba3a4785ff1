//! Cluster state, one small interface per concern: [`DriverStore`] (status, positions, the geo
//! search), [`PresenceStore`] (which drivers have a socket on a live replica), [`LeaseStore`]
//! (replicas alive and their counts), [`TripStore`] (trips, compare-and-set), [`OfferStore`]
//! (offers held until answered or expired) and [`LimitStore`] (per-user limits); a replica
//! holds all of them as one [`StateEngine`]. Two engines, as
//! events.md asks, each with one file per concern:
//! - [`memory::MemoryState`]: a single replica without `REDIS_URL`;
//! - [`redis::RedisState`]: shared by every replica, one atomic Lua script per operation (its
//!   scripts in `redis/lua/`, their plumbing in [`script`], their keys in [`keys`]).
//!
//! Engines store; they do not decide. Business rules (the trip decision table in
//! `crate::trips`, validation, throttling of admin updates) live above, so both engines behave
//! the same by construction. `tests/state_contract` holds both to one contract, a module per
//! concern.

pub mod geo;
pub mod keys;
pub mod memory;
pub mod redis;
pub mod script;

use std::time::Duration;

use async_trait::async_trait;
use shared::{
    events::{DriverStatus, OfferAnswer, TripOffer, TripStatus},
    namespace::Namespace,
};

/// Why the state store could not do what was asked. Every kind is answered the same way to
/// clients (`UNAVAILABLE`, or 503: retry); the kinds are for logs, metrics and the decision to
/// retry. fred follows MOVED and ASK redirections itself; they never reach here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The connection is down: nothing was sent.
    #[error("state store unavailable: Redis connection down")]
    Unavailable,
    /// No answer within the command timeout (a frozen or overloaded Redis): the command may
    /// still have run.
    #[error("state store unavailable: no answer in time")]
    Timeout,
    /// The connection broke with the command in flight, or fred gave the command up.
    #[error("state store unavailable: connection lost ({0})")]
    ConnectionLost(String),
    /// A Lua script failed while running (a bug in a script or a key of the wrong type).
    #[error("state store error: script failed ({0})")]
    Script(String),
    /// Redis refused the command (out of memory, read-only replica, wrong type, cross-slot).
    #[error("state store error: {0}")]
    Command(String),
    /// A reply the engine cannot read, or a value it cannot encode.
    #[error("state store error: unexpected data ({0})")]
    Data(String),
    /// This replica's own machinery stopped (the location writer ended).
    #[error("state store unavailable: {0}")]
    Stopped(&'static str),
}

impl StateError {
    /// A short stable label (logs, metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::ConnectionLost(_) => "connection_lost",
            Self::Script(_) => "script",
            Self::Command(_) => "command",
            Self::Data(_) => "data",
            Self::Stopped(_) => "stopped",
        }
    }
}

impl From<fred::error::Error> for StateError {
    fn from(e: fred::error::Error) -> Self {
        use fred::error::ErrorKind;
        match e.kind() {
            ErrorKind::Timeout => Self::Timeout,
            ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Backpressure => {
                Self::ConnectionLost(e.details().to_owned())
            }
            ErrorKind::Parse | ErrorKind::Protocol | ErrorKind::NotFound => {
                Self::Data(e.details().to_owned())
            }
            // Redis reports a failing script as `ERR user_script:…` or `ERR Error running script`.
            _ if e.details().contains("user_script") || e.details().contains("running script") => {
                Self::Script(e.details().to_owned())
            }
            _ => Self::Command(e.to_string()),
        }
    }
}

/// A validated position report of a driver.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub lat: f64,
    pub lng: f64,
    pub heading: Option<f64>,
    pub speed: Option<f64>,
    pub accuracy: Option<f64>,
    /// As the device reported it (RFC 3339), when it did.
    pub recorded_at: Option<String>,
    /// When the gateway accepted it (RFC 3339).
    pub at: String,
}

/// The trip a driver is bound to (`DRIVER_ASSIGNED` until `COMPLETED`/`CANCELLED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveTrip {
    pub trip_id: String,
    pub passenger_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationOutcome {
    /// Stored; forward to the passenger of `active_trip` when there is one.
    Accepted { active_trip: Option<ActiveTrip> },
    /// Over `LOCATION_RATE_PER_S` this second: not stored.
    RateLimited,
}

/// What `admin:driver_state` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverState {
    pub status: DriverStatus,
    /// A socket of the driver is open on a live replica.
    pub connected: bool,
    pub last_location: Option<Position>,
    pub active_trip_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearbyQuery {
    pub lat: f64,
    pub lng: f64,
    pub radius_m: f64,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NearbyDriver {
    pub driver_id: String,
    pub lat: f64,
    pub lng: f64,
    pub distance_m: f64,
    pub status: DriverStatus,
    /// When the position was accepted.
    pub at: String,
}

/// A trip as the gateway keeps it (`TRIP_TTL_S`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trip {
    pub status: TripStatus,
    pub passenger_id: String,
    pub driver_id: Option<String>,
    /// Bumped by every write: writes are compare-and-set on it.
    pub version: u64,
}

/// One accepted trip event, written atomically with the driver bindings it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripWrite {
    pub trip_id: String,
    /// The version read before deciding; `None`: the trip must not exist yet.
    pub expected_version: Option<u64>,
    pub status: TripStatus,
    pub passenger_id: String,
    pub driver_id: Option<String>,
    /// Make this the driver's active trip.
    pub bind: Option<String>,
    /// These drivers lose the binding if it is still this trip.
    pub unbind: Vec<String>,
}

/// Sockets one replica holds, by namespace (`admin:stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeStats {
    #[serde(rename = "nodeId")]
    pub node_id: String,
    pub drivers: u64,
    pub passengers: u64,
    pub admin: u64,
}

/// A driver whose status changed without asking (presence expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub driver_id: String,
    pub status: DriverStatus,
    pub at: String,
}

/// Drivers: status, positions (rate-limited), their state and the geo search.
#[async_trait]
pub trait DriverStore: Send + Sync {
    /// Stores `status`; the geo index follows (only ONLINE drivers with a position are in it).
    /// Returns the previous status (`None`: never set).
    async fn set_status(
        &self,
        driver: &str,
        status: DriverStatus,
        at: &str,
    ) -> Result<Option<DriverStatus>, StateError>;

    /// Rate-limits, stores the last position (geo index while ONLINE; the stream with Redis).
    async fn record_location(
        &self,
        driver: &str,
        position: &Position,
    ) -> Result<LocationOutcome, StateError>;

    /// `None`: the driver was never seen (never connected, never reported).
    async fn driver_state(&self, driver: &str) -> Result<Option<DriverState>, StateError>;

    /// Available drivers within the radius, nearest first.
    async fn drivers_nearby(&self, query: &NearbyQuery) -> Result<Vec<NearbyDriver>, StateError>;
}

/// Presence: which drivers have a socket on a live replica, and OFFLINE after the grace.
#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// The first socket of `driver` on this replica opened.
    async fn presence_opened(&self, driver: &str) -> Result<(), StateError>;

    /// The last socket of `driver` on this replica closed: if none is left anywhere, the driver
    /// goes OFFLINE after the grace period unless a socket opens again.
    async fn presence_closed(&self, driver: &str) -> Result<(), StateError>;

    /// Replaces what the store knows of this replica's drivers with `drivers` (those it holds a
    /// socket of): each is present again; any other driver recorded as held here is released and
    /// starts its grace if no replica holds it.
    async fn presence_resync(&self, drivers: &[String]) -> Result<(), StateError>;

    /// Whether `driver` has a socket on a live replica.
    async fn is_present(&self, driver: &str) -> Result<bool, StateError>;

    /// Whether `driver` has a socket on a live replica, or is within the grace after their
    /// last one closed (an app between two connections).
    async fn is_reachable(&self, driver: &str) -> Result<bool, StateError>;

    /// Applies what is due: replicas whose lease lapsed lose their drivers (when `reap_lapsed`),
    /// and drivers gone past their grace become OFFLINE. Each change is returned once, to one
    /// replica.
    async fn expire_presence(&self, reap_lapsed: bool) -> Result<Vec<StatusChange>, StateError>;
}

/// Replica leases: who is alive, with its socket counts.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Renews this replica's lease and publishes its socket counts. `false`: the lease was not
    /// live before (first renewal, lapsed, reaped by another replica, or lost with Redis's data),
    /// so what the store knows of this replica's drivers may be gone.
    async fn renew_lease(&self, stats: &NodeStats) -> Result<bool, StateError>;

    /// Every replica whose lease is alive, with its last reported counts.
    async fn live_nodes(&self) -> Result<Vec<NodeStats>, StateError>;

    /// Drain: give up this replica's lease; its remaining drivers start their grace now.
    async fn release_lease(&self) -> Result<(), StateError>;
}

/// Trips: read, and written compare-and-set.
#[async_trait]
pub trait TripStore: Send + Sync {
    async fn trip(&self, trip_id: &str) -> Result<Option<Trip>, StateError>;

    /// Compare-and-set: `false` when the trip changed since it was read (the caller re-decides).
    async fn write_trip(&self, write: &TripWrite) -> Result<bool, StateError>;
}

/// An offer held for a driver until it is answered or expires.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOffer {
    pub offer: TripOffer,
    /// When it expires, in milliseconds since the epoch (the dispatching replica's clock).
    pub expires_at_ms: u64,
}

/// What recording an answer to an offer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// This answer is the offer's.
    First,
    /// An earlier answer is the offer's: this one.
    Already(OfferAnswer),
    /// The offer expired (or was closed unanswered), or was never held.
    Gone,
}

/// Offers held for drivers until answered or expired: each has exactly one outcome, the first
/// answer recorded or its close.
#[async_trait]
pub trait OfferStore: Send + Sync {
    /// Holds `offer` for `driver` until it expires; `false` when an offer of that id is already
    /// held for the driver (a repeat, not held again).
    async fn hold_offer(&self, driver: &str, offer: &HeldOffer) -> Result<bool, StateError>;

    /// The driver's offers neither answered nor closed nor expired at `now_ms`, soonest to
    /// expire first.
    async fn pending_offers(&self, driver: &str, now_ms: u64)
    -> Result<Vec<HeldOffer>, StateError>;

    /// Records `answer` as the offer's when it is the first, before the offer expired at
    /// `now_ms`. `notice`: told to every replica when it is (cluster; see `OfferNotice`).
    async fn answer_offer(
        &self,
        driver: &str,
        offer_id: &str,
        answer: OfferAnswer,
        now_ms: u64,
        notice: &str,
    ) -> Result<Answered, StateError>;

    /// Dispatch stops waiting: the offer is closed unanswered unless an answer came first,
    /// which is returned.
    async fn close_offer(
        &self,
        driver: &str,
        offer_id: &str,
    ) -> Result<Option<OfferAnswer>, StateError>;
}

/// Per-user limits: sockets per user and namespace, handshakes per window.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Socket `socket` of `user` opened in `ns`, registered cluster-wide. When the user now
    /// holds more than `max` sockets there (`0`: no limit), the oldest beyond it are
    /// unregistered and returned, oldest first: the caller replaces them.
    async fn user_socket_opened(
        &self,
        ns: Namespace,
        user: &str,
        socket: &str,
        max: u32,
    ) -> Result<Vec<String>, StateError>;

    /// Socket `socket` of `user` in `ns` closed.
    async fn user_socket_closed(
        &self,
        ns: Namespace,
        user: &str,
        socket: &str,
    ) -> Result<(), StateError>;

    /// Counts a handshake of `user` (the token's `sub`) in the current window of `window`:
    /// `false` once more than `limit` were counted in it.
    async fn handshake_allowed(
        &self,
        user: &str,
        limit: u32,
        window: Duration,
    ) -> Result<bool, StateError>;
}

/// The whole store a replica uses: every concern, from one engine (memory or Redis).
pub trait StateEngine:
    DriverStore + PresenceStore + LeaseStore + TripStore + OfferStore + LimitStore
{
}

impl<T> StateEngine for T where
    T: DriverStore + PresenceStore + LeaseStore + TripStore + OfferStore + LimitStore
{
}

/// Settings both engines need.
#[derive(Debug, Clone)]
pub struct StateSettings {
    pub node_id: String,
    /// Location updates accepted per driver per second.
    pub location_rate_per_s: u32,
    pub presence_grace: Duration,
    pub node_ttl: Duration,
    pub trip_ttl: Duration,
    /// Approximate cap of the `driver-locations` stream (Redis only).
    pub location_stream_maxlen: u64,
}

#[cfg(test)]
mod error_tests {
    use fred::error::{Error, ErrorKind};

    use super::StateError;

    #[test]
    fn redis_errors_become_kinds_not_strings() {
        let kind = |k, details: &'static str| StateError::from(Error::new(k, details)).kind();
        assert_eq!(kind(ErrorKind::Timeout, "Request timed out."), "timeout");
        assert_eq!(kind(ErrorKind::IO, "Connection reset"), "connection_lost");
        assert_eq!(
            kind(ErrorKind::Canceled, "Connection closed unexpectedly."),
            "connection_lost"
        );
        assert_eq!(kind(ErrorKind::Parse, "Could not convert"), "data");
        assert_eq!(
            kind(
                ErrorKind::Unknown,
                "ERR Error running script (call to f_x): @user_script:1: oops"
            ),
            "script"
        );
        assert_eq!(
            kind(
                ErrorKind::Unknown,
                "CROSSSLOT Keys in request don't hash to the same slot"
            ),
            "command"
        );
        assert_eq!(StateError::Unavailable.kind(), "unavailable");
    }
}
