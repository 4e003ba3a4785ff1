//! Client payloads, decoded into typed structs (`crate::input`): every refusal names the field,
//! and nothing invalid goes on.

use serde::Deserialize;
use serde_json::Value;
use shared::events::DriverStatus;

use super::ack::EventError;
use crate::{
    input::{
        self, Count, Field, FromJson, Heading, Latitude, Longitude, NonNegative, Number, Problem,
        Refused, Text, Timestamp,
    },
    state::{NearbyQuery, Position},
};

impl From<Refused> for EventError {
    fn from(Refused(message): Refused) -> Self {
        EventError::InvalidPayload(message)
    }
}

/// `payload` decoded into `T`; it must be a JSON object.
fn decode<T: serde::de::DeserializeOwned>(payload: Option<Value>) -> Result<T, EventError> {
    if payload.is_none() {
        return Err(EventError::InvalidPayload(
            "payload must be valid JSON".into(),
        ));
    }
    Ok(input::decode(payload, "payload must be a JSON object")?)
}

/// Longest string a client names something with (a driver, a session, a reason).
const MAX_NAME_CHARS: usize = 256;

#[derive(Deserialize)]
struct StatusPayload {
    #[serde(default)]
    status: Field<DriverStatus>,
}

/// `driver:status`.
pub fn driver_status(payload: Option<Value>) -> Result<DriverStatus, EventError> {
    let payload: StatusPayload = decode(payload)?;
    Ok(payload.status.required("status")?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocationPayload {
    #[serde(default)]
    lat: Field<Latitude>,
    #[serde(default)]
    lng: Field<Longitude>,
    #[serde(default)]
    heading: Field<Heading>,
    #[serde(default)]
    speed: Field<NonNegative>,
    #[serde(default)]
    accuracy: Field<NonNegative>,
    #[serde(default)]
    recorded_at: Field<Timestamp>,
}

/// `driver:location`, stamped with `at`.
pub fn location(payload: Option<Value>, at: String) -> Result<Position, EventError> {
    let p: LocationPayload = decode(payload)?;
    Ok(Position {
        lat: p.lat.required("lat")?.0,
        lng: p.lng.required("lng")?.0,
        heading: p.heading.optional("heading")?.map(|h| h.0),
        speed: p.speed.optional("speed")?.map(|s| s.0),
        accuracy: p.accuracy.optional("accuracy")?.map(|a| a.0),
        recorded_at: p.recorded_at.optional("recordedAt")?.map(|t| t.0),
        at,
    })
}

/// Bounds of `admin:drivers_nearby`.
pub const DEFAULT_RADIUS_M: f64 = 5_000.0;
pub const MAX_RADIUS_M: f64 = 50_000.0;
pub const DEFAULT_NEARBY_LIMIT: usize = 50;
pub const MAX_NEARBY_LIMIT: usize = 200;

/// A search radius in metres, within (0, [`MAX_RADIUS_M`]].
struct Radius(f64);

impl FromJson for Radius {
    fn from_json(value: Value) -> Result<Self, Problem> {
        match Number::from_json(value)? {
            Number(r) if r > 0.0 && r <= MAX_RADIUS_M => Ok(Self(r)),
            _ => Err(Problem::Field(format!(
                "must be within (0, {MAX_RADIUS_M}]"
            ))),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NearbyPayload {
    #[serde(default)]
    lat: Field<Latitude>,
    #[serde(default)]
    lng: Field<Longitude>,
    #[serde(default)]
    radius_m: Field<Radius>,
    #[serde(default)]
    limit: Field<Count<{ MAX_NEARBY_LIMIT as u64 }>>,
}

/// `admin:drivers_nearby`: out-of-range values are refused, not clamped.
pub fn nearby(payload: Option<Value>) -> Result<NearbyQuery, EventError> {
    let p: NearbyPayload = decode(payload)?;
    Ok(NearbyQuery {
        lat: p.lat.required("lat")?.0,
        lng: p.lng.required("lng")?.0,
        radius_m: p
            .radius_m
            .optional("radiusM")?
            .map_or(DEFAULT_RADIUS_M, |r| r.0),
        limit: p
            .limit
            .optional("limit")?
            .map_or(DEFAULT_NEARBY_LIMIT, |l| l.0 as usize),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DriverPayload {
    #[serde(default)]
    driver_id: Field<Text<MAX_NAME_CHARS>>,
}

/// `admin:driver_state`: the driver asked about.
pub fn driver_id(payload: Option<Value>) -> Result<String, EventError> {
    let p: DriverPayload = decode(payload)?;
    Ok(p.driver_id.required("driverId")?.0)
}

#[derive(Deserialize)]
struct DisconnectPayload {
    #[serde(default)]
    sid: Field<Text<MAX_NAME_CHARS>>,
    #[serde(default)]
    reason: Field<Text<MAX_NAME_CHARS>>,
}

/// `admin:disconnect_session`: the session, and why (for the log).
pub fn disconnect(payload: Option<Value>) -> Result<(String, Option<String>), EventError> {
    let p: DisconnectPayload = decode(payload)?;
    let sid = p.sid.required("sid")?.0;
    Ok((sid, p.reason.optional("reason")?.map(|r| r.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn loc(v: Value) -> Result<Position, String> {
        location(Some(v), "t".into()).map_err(|e| e.to_string())
    }

    #[test]
    fn locations_are_validated_field_by_field() {
        assert!(loc(json!({"lat": 48.8, "lng": 2.3})).is_ok());
        assert!(loc(json!({"lat": 48.8, "lng": 2.3, "heading": null, "speed": 0, "accuracy": 3.5, "recordedAt": "2026-01-01T00:00:00Z"})).is_ok());
        let cases = [
            (json!({"lng": 2.3}), "lat is required"),
            (
                json!({"lat": "48", "lng": 2.3}),
                "lat must be a finite number",
            ),
            (
                json!({"lat": 91, "lng": 2.3}),
                "lat must be within [-90, 90]",
            ),
            (
                json!({"lat": 1, "lng": -180.5}),
                "lng must be within [-180, 180]",
            ),
            (
                json!({"lat": 1, "lng": 1, "heading": 360}),
                "heading must be within [0, 360)",
            ),
            (
                json!({"lat": 1, "lng": 1, "speed": -1}),
                "speed must be >= 0",
            ),
            (
                json!({"lat": 1, "lng": 1, "accuracy": "x"}),
                "accuracy must be a finite number",
            ),
            (
                json!({"lat": 1, "lng": 1, "recordedAt": "yesterday"}),
                "recordedAt must be an RFC 3339 string",
            ),
            (json!([1, 2]), "payload must be a JSON object"),
        ];
        for (payload, message) in cases {
            assert_eq!(
                loc(payload.clone()).err().as_deref(),
                Some(message),
                "{payload}"
            );
        }
        assert_eq!(
            location(None, "t".into())
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("payload must be valid JSON")
        );
    }

    #[test]
    fn statuses_are_the_three_known() {
        assert_eq!(
            driver_status(Some(json!({"status": "BUSY"}))).ok(),
            Some(DriverStatus::Busy)
        );
        for bad in [
            json!({}),
            json!({"status": "online"}),
            json!({"status": 1}),
            json!("ONLINE"),
        ] {
            assert!(driver_status(Some(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn nearby_bounds_are_enforced_not_clamped() {
        let q = nearby(Some(json!({"lat": 1, "lng": 2}))).expect("defaults");
        assert_eq!(
            (q.radius_m, q.limit),
            (DEFAULT_RADIUS_M, DEFAULT_NEARBY_LIMIT)
        );
        for bad in [
            json!({"lat": 1, "lng": 2, "radiusM": 50001}),
            json!({"lat": 1, "lng": 2, "radiusM": 0}),
            json!({"lat": 1, "lng": 2, "limit": 201}),
            json!({"lat": 1, "lng": 2, "limit": 0}),
            json!({"lat": 1, "lng": 2, "limit": 2.5}),
            json!({"lat": 100, "lng": 2}),
        ] {
            assert!(nearby(Some(bad.clone())).is_err(), "{bad}");
        }
    }
}

/// Whatever a client sends: decoded within the contract's ranges, or refused as
/// `INVALID_PAYLOAD`; never a panic.
#[cfg(test)]
mod props {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::test_support::{json, json_object};

    fn refused_as_invalid<T>(result: &Result<T, EventError>) -> bool {
        match result {
            Ok(_) => true,
            Err(error) => matches!(error, EventError::InvalidPayload(m) if !m.is_empty()),
        }
    }

    proptest! {
        #[test]
        fn any_payload_is_decoded_in_range_or_refused(payload in prop_oneof![json(), json_object()]) {
            let located = location(Some(payload.clone()), "t".into());
            prop_assert!(refused_as_invalid(&located));
            if let Ok(p) = located {
                prop_assert!((-90.0..=90.0).contains(&p.lat) && (-180.0..=180.0).contains(&p.lng));
                prop_assert!(p.heading.is_none_or(|h| (0.0..360.0).contains(&h)));
                prop_assert!(p.speed.is_none_or(|s| s >= 0.0) && p.accuracy.is_none_or(|a| a >= 0.0));
            }
            let query = nearby(Some(payload.clone()));
            prop_assert!(refused_as_invalid(&query));
            if let Ok(q) = query {
                prop_assert!(q.radius_m > 0.0 && q.radius_m <= MAX_RADIUS_M);
                prop_assert!((1..=MAX_NEARBY_LIMIT).contains(&q.limit));
            }
            prop_assert!(refused_as_invalid(&driver_status(Some(payload))));
        }

        #[test]
        fn every_well_formed_location_is_taken_as_sent(
            lat in -90.0..=90.0f64,
            lng in -180.0..=180.0f64,
            heading in proptest::option::of(0.0..360.0f64),
            speed in proptest::option::of(0.0..1e6f64),
        ) {
            let mut payload = json!({ "lat": lat, "lng": lng });
            if let Some(h) = heading {
                payload["heading"] = h.into();
            }
            if let Some(s) = speed {
                payload["speed"] = s.into();
            }
            let p = location(Some(payload), "t".into()).expect("well formed");
            prop_assert_eq!((p.lat, p.lng, p.heading, p.speed), (lat, lng, heading, speed));
        }
    }
}
