//! Validation of client payloads: every refusal names the field, and nothing invalid goes on.

use serde_json::{Map, Value};
use shared::events::DriverStatus;

use super::ack::EventError;
use crate::clock::is_rfc3339;
use crate::state::{NearbyQuery, Position};

type Fields = Map<String, Value>;

fn invalid(message: impl Into<String>) -> EventError {
    EventError::InvalidPayload(message.into())
}

/// The payload as a JSON object.
pub fn object(payload: Option<Value>) -> Result<Fields, EventError> {
    match payload {
        Some(Value::Object(fields)) => Ok(fields),
        Some(_) => Err(invalid("payload must be a JSON object")),
        None => Err(invalid("payload must be valid JSON")),
    }
}

/// A present, non-null field.
fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|v| !v.is_null())
}

fn number(fields: &Fields, name: &str) -> Result<Option<f64>, EventError> {
    match field(fields, name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(format!("{name} must be a finite number"))),
    }
}

fn required_number(fields: &Fields, name: &str) -> Result<f64, EventError> {
    number(fields, name)?.ok_or_else(|| invalid(format!("{name} is required")))
}

fn in_range(name: &str, value: f64, min: f64, max: f64) -> Result<f64, EventError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(format!("{name} must be within [{min}, {max}]")))
    }
}

pub fn string(fields: &Fields, name: &str, max_chars: usize) -> Result<Option<String>, EventError> {
    match field(fields, name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max_chars => {
            Ok(Some(s.trim().to_owned()))
        }
        Some(_) => Err(invalid(format!(
            "{name} must be a non-empty string of at most {max_chars} characters"
        ))),
    }
}

pub fn required_string(
    fields: &Fields,
    name: &str,
    max_chars: usize,
) -> Result<String, EventError> {
    string(fields, name, max_chars)?.ok_or_else(|| invalid(format!("{name} is required")))
}

/// `driver:status`.
pub fn driver_status(payload: Option<Value>) -> Result<DriverStatus, EventError> {
    let fields = object(payload)?;
    match field(&fields, "status") {
        None => Err(invalid("status is required")),
        Some(v) => v
            .as_str()
            .and_then(DriverStatus::parse)
            .ok_or_else(|| invalid("status must be ONLINE, BUSY or OFFLINE")),
    }
}

/// `driver:location`, stamped with `at`.
pub fn location(payload: Option<Value>, at: String) -> Result<Position, EventError> {
    let fields = object(payload)?;
    let lat = in_range("lat", required_number(&fields, "lat")?, -90.0, 90.0)?;
    let lng = in_range("lng", required_number(&fields, "lng")?, -180.0, 180.0)?;
    let heading = number(&fields, "heading")?;
    if heading.is_some_and(|h| !(0.0..360.0).contains(&h)) {
        return Err(invalid("heading must be within [0, 360)"));
    }
    let non_negative = |name: &str| -> Result<Option<f64>, EventError> {
        match number(&fields, name)? {
            Some(v) if v < 0.0 => Err(invalid(format!("{name} must be >= 0"))),
            other => Ok(other),
        }
    };
    let speed = non_negative("speed")?;
    let accuracy = non_negative("accuracy")?;
    let recorded_at = match field(&fields, "recordedAt") {
        None => None,
        Some(Value::String(s)) if is_rfc3339(s) => Some(s.clone()),
        Some(_) => return Err(invalid("recordedAt must be an RFC 3339 string")),
    };
    Ok(Position {
        lat,
        lng,
        heading,
        speed,
        accuracy,
        recorded_at,
        at,
    })
}

/// Bounds of `admin:drivers_nearby`.
pub const DEFAULT_RADIUS_M: f64 = 5_000.0;
pub const MAX_RADIUS_M: f64 = 50_000.0;
pub const DEFAULT_NEARBY_LIMIT: usize = 50;
pub const MAX_NEARBY_LIMIT: usize = 200;

/// `admin:drivers_nearby`: out-of-range values are refused, not clamped.
pub fn nearby(payload: Option<Value>) -> Result<NearbyQuery, EventError> {
    let fields = object(payload)?;
    let lat = in_range("lat", required_number(&fields, "lat")?, -90.0, 90.0)?;
    let lng = in_range("lng", required_number(&fields, "lng")?, -180.0, 180.0)?;
    let radius_m = match number(&fields, "radiusM")? {
        None => DEFAULT_RADIUS_M,
        Some(r) if r > 0.0 && r <= MAX_RADIUS_M => r,
        Some(_) => {
            return Err(invalid(format!(
                "radiusM must be within (0, {MAX_RADIUS_M}]"
            )));
        }
    };
    let limit = match field(&fields, "limit") {
        None => DEFAULT_NEARBY_LIMIT,
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_NEARBY_LIMIT).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "limit must be an integer within [1, {MAX_NEARBY_LIMIT}]"
                ))
            })?,
    };
    Ok(NearbyQuery {
        lat,
        lng,
        radius_m,
        limit,
    })
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
