//! Field checks shared by the internal endpoints; each refusal names the field.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::ApiError;

/// Longest id accepted in a path or body (trip, offer and session ids are opaque strings).
pub const MAX_ID_CHARS: usize = 256;

/// A request body that must be a JSON object (every POST body of the internal API).
pub fn object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(fields) => Ok(fields),
        _ => Err(ApiError::InvalidPayload(
            "body must be a JSON object".into(),
        )),
    }
}

pub fn id(field: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_ID_CHARS {
        return Err(ApiError::InvalidPayload(format!(
            "{field} must be a non-empty string of at most {MAX_ID_CHARS} characters"
        )));
    }
    Ok(value.to_owned())
}

pub fn required_id(body: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match body.get(field) {
        Some(Value::String(s)) => id(field, s),
        Some(Value::Null) | None => Err(ApiError::InvalidPayload(format!("{field} is required"))),
        Some(_) => Err(ApiError::InvalidPayload(format!(
            "{field} must be a string"
        ))),
    }
}

/// A user id, spelled the way rooms spell it.
pub fn uuid(field: &str, value: &str) -> Result<String, ApiError> {
    Uuid::parse_str(value)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::InvalidPayload(format!("{field} must be a UUID")))
}

pub fn required_uuid(body: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    uuid(field, &required_id(body, field)?)
}

pub fn optional_uuid(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => required_uuid(body, field).map(Some),
    }
}
