//! Event names and payloads between clients and the gateway (`docs/spec/events.md`).
//! Payload fields are camelCase; optional numbers that were not sent are `null` when emitted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

// --- server -> client -----------------------------------------------------------------------

/// Sent to a socket right after a successful handshake.
pub const HELLO: &str = "hello";
/// Sent to a user's other sockets when one of their sessions is revoked.
pub const AUTH_SESSION_REVOKED: &str = "auth:session_revoked";
/// To admins: a driver's status changed.
pub const DRIVER_STATUS_CHANGED: &str = "driver:status_changed";
/// To admins: a driver's position (at most once a second per driver). Also the client event name.
pub const DRIVER_LOCATION: &str = "driver:location";
/// To the passenger, the driver and admins: a trip's status changed.
pub const TRIP_UPDATED: &str = "trip:updated";
/// To the passenger of a driver's active trip: every accepted position of that driver.
pub const TRIP_DRIVER_LOCATION: &str = "trip:driver_location";
/// To a driver, with an acknowledgement: dispatch offers a trip.
pub const TRIP_OFFER: &str = "trip:offer";
/// To every socket of a driver once an offer is answered (by any of them) or expired: it is no
/// longer open, whatever the app shows.
pub const TRIP_OFFER_WITHDRAWN: &str = "trip:offer_withdrawn";
/// To one socket, `TOKEN_REFRESH_LEAD_MS` before its expiry: refresh now (`auth:refresh`).
pub const AUTH_TOKEN_EXPIRING: &str = "auth:token_expiring";
/// To one socket at its expiry, just before the server disconnects it.
pub const AUTH_EXPIRED: &str = "auth:expired";
/// To a user's oldest socket in a namespace, just before it is disconnected to make room for a
/// new one (`MAX_SOCKETS_PER_USER`).
pub const AUTH_CONNECTION_REPLACED: &str = "auth:connection_replaced";

// --- client -> server -----------------------------------------------------------------------

/// Driver sets ONLINE, BUSY or OFFLINE.
pub const DRIVER_STATUS: &str = "driver:status";
pub const ADMIN_STATS: &str = "admin:stats";
pub const ADMIN_DRIVERS_NEARBY: &str = "admin:drivers_nearby";
pub const ADMIN_DRIVER_STATE: &str = "admin:driver_state";
pub const ADMIN_DISCONNECT_SESSION: &str = "admin:disconnect_session";
/// Any namespace, with an acknowledgement: a new access token for this socket, no reconnect.
pub const AUTH_REFRESH: &str = "auth:refresh";

/// Whether `event`, sent to one user's own room (`driver:{id}`, `passenger:{id}`), is kept for
/// that user's reconnecting apps (recovery.md, "Which events"): what changes what the app must
/// show is; what only its latest value matters for, what expires, and what goes to one socket
/// is not. The one place this is decided: the gateway's delivery asks it for every event.
pub fn is_recoverable(event: &str) -> bool {
    !matches!(
        event,
        TRIP_DRIVER_LOCATION
            | TRIP_OFFER
            | TRIP_OFFER_WITHDRAWN
            | DRIVER_LOCATION
            | DRIVER_STATUS_CHANGED
            | HELLO
            | AUTH_TOKEN_EXPIRING
            | AUTH_EXPIRED
            | AUTH_CONNECTION_REPLACED
    )
}

/// Event names a backend may not emit through the generic push endpoint.
pub fn is_reserved(event: &str) -> bool {
    matches!(
        event,
        "connect" | "connect_error" | "disconnect" | "disconnecting" | HELLO
    ) || event.starts_with("auth:")
}

/// Payload of [`HELLO`]: `{ "ok": true, "nsp": "/drivers" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub ok: bool,
    pub nsp: String,
    /// Present when the client sent `auth.offset` (recovery.md): whether what it missed was
    /// replayed before this `hello`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// Present with `recovered` when the log answered: the offset the client stands at now, to
    /// send on its next reconnect if no event comes first. So a client that had none (it sent
    /// `""`), or one whose offset was no longer kept, does not lose what follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
}

/// Payload of [`AUTH_SESSION_REVOKED`]: `{ "sid", "reason", "at" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRevokedNotice {
    pub sid: String,
    pub reason: String,
    /// RFC 3339, when the revocation happened (as published, else when the gateway accepted it).
    pub at: String,
}

/// Payload of [`AUTH_TOKEN_EXPIRING`]: `{ "expiresAt" }` (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenExpiring {
    pub expires_at: String,
}

/// Payload of [`AUTH_EXPIRED`]: `{ "at" }` (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expired {
    pub at: String,
}

/// Payload of [`AUTH_CONNECTION_REPLACED`]: `{ "by" }`, the new socket's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionReplaced {
    pub by: String,
}

/// A driver's availability. `OFFLINE` until the driver sets it; only `ONLINE` is *available*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriverStatus {
    Online,
    Busy,
    Offline,
}

impl DriverStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ONLINE" => Self::Online,
            "BUSY" => Self::Busy,
            "OFFLINE" => Self::Offline,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "ONLINE",
            Self::Busy => "BUSY",
            Self::Offline => "OFFLINE",
        }
    }
}

/// Payload of [`DRIVER_STATUS_CHANGED`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverStatusChanged {
    pub driver_id: String,
    pub status: DriverStatus,
    pub at: String,
}

/// Payload of [`DRIVER_LOCATION`] as admins receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverLocationUpdate {
    pub driver_id: String,
    pub lat: f64,
    pub lng: f64,
    pub heading: Option<f64>,
    pub speed: Option<f64>,
    pub at: String,
}

/// Payload of [`TRIP_DRIVER_LOCATION`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TripDriverLocation {
    pub trip_id: String,
    pub driver_id: String,
    pub lat: f64,
    pub lng: f64,
    pub heading: Option<f64>,
    pub speed: Option<f64>,
    pub at: String,
}

/// A trip's status, in lifecycle order (`CANCELLED` ends it from any state before the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TripStatus {
    Requested,
    DriverAssigned,
    DriverArriving,
    DriverArrived,
    Started,
    Completed,
    Cancelled,
}

impl TripStatus {
    pub const ALL: [TripStatus; 7] = [
        Self::Requested,
        Self::DriverAssigned,
        Self::DriverArriving,
        Self::DriverArrived,
        Self::Started,
        Self::Completed,
        Self::Cancelled,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::DriverAssigned => "DRIVER_ASSIGNED",
            Self::DriverArriving => "DRIVER_ARRIVING",
            Self::DriverArrived => "DRIVER_ARRIVED",
            Self::Started => "STARTED",
            Self::Completed => "COMPLETED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Whether the trip is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }
}

/// Payload of [`TRIP_UPDATED`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TripUpdated {
    pub trip_id: String,
    pub status: TripStatus,
    pub passenger_id: String,
    pub driver_id: Option<String>,
    pub data: Value,
    pub at: String,
}

/// Payload of [`TRIP_OFFER`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TripOffer {
    pub offer_id: String,
    pub trip_id: String,
    /// RFC 3339: after this the offer is void.
    pub expires_at: String,
    pub data: Value,
}

/// The driver app's answer to a [`TRIP_OFFER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferAnswer {
    pub accept: bool,
}

/// Payload of [`TRIP_OFFER_WITHDRAWN`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferWithdrawn {
    pub offer_id: String,
    pub trip_id: String,
    /// `answered` (the first answer of any of the driver's sockets is the one dispatch got) or
    /// `expired` (nobody answered in time).
    pub reason: String,
}

/// Error codes of acknowledgements (`{ ok: false, error: { code, message } }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AckErrorCode {
    InvalidPayload,
    RateLimited,
    Forbidden,
    NotFound,
    Unavailable,
    /// `auth:refresh` refused; the message is the handshake's.
    Unauthorized,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_app_must_show_is_recoverable_latest_values_and_expiring_things_are_not() {
        for kept in [
            TRIP_UPDATED,
            AUTH_SESSION_REVOKED,
            "order:receipt",
            "chat:message",
        ] {
            assert!(is_recoverable(kept), "{kept}");
        }
        for live in [
            TRIP_DRIVER_LOCATION,
            TRIP_OFFER,
            HELLO,
            AUTH_TOKEN_EXPIRING,
            AUTH_EXPIRED,
            AUTH_CONNECTION_REPLACED,
        ] {
            assert!(!is_recoverable(live), "{live}");
        }
    }

    #[test]
    fn reserved_names_are_refused() {
        for name in [
            "connect",
            "connect_error",
            "disconnect",
            "disconnecting",
            "hello",
            "auth:x",
        ] {
            assert!(is_reserved(name), "{name}");
        }
        assert!(!is_reserved("promo:banner"));
    }

    #[test]
    fn statuses_round_trip() {
        for t in TripStatus::ALL {
            assert_eq!(TripStatus::parse(t.as_str()), Some(t));
        }
        assert_eq!(DriverStatus::parse("ONLINE"), Some(DriverStatus::Online));
        assert_eq!(DriverStatus::parse("online"), None);
        let json = serde_json::to_value(TripStatus::DriverAssigned).expect("serialize");
        assert_eq!(json, "DRIVER_ASSIGNED");
    }
}
