//! Strategies for the property tests of the decoders of outside input: event payloads, auth
//! payloads, internal API bodies. Random JSON alone rarely names a field a decoder looks at, so
//! keys and strings are drawn half from the names and values the contract uses.

use proptest::prelude::*;
use serde_json::{Number, Value};

/// Field names the decoders read.
const KEYS: &[&str] = &[
    "status",
    "lat",
    "lng",
    "heading",
    "speed",
    "accuracy",
    "recordedAt",
    "radiusM",
    "limit",
    "driverId",
    "type",
    "passengerId",
    "data",
    "offerId",
    "tripId",
    "expiresInMs",
    "namespace",
    "rooms",
    "event",
    "token",
    "sid",
    "userId",
    "reason",
    "at",
    "oldSid",
    "newSid",
];

/// Values the contract gives meaning to, and edge cases.
const WORDS: &[&str] = &[
    "ONLINE",
    "BUSY",
    "OFFLINE",
    "REQUESTED",
    "DRIVER_ASSIGNED",
    "STARTED",
    "COMPLETED",
    "CANCELLED",
    "/drivers",
    "/passengers",
    "/admin",
    "driver:1",
    "passenger:2",
    "session:s",
    "admin:all",
    "admin:org:",
    "trip:1",
    "hello",
    "auth:refresh",
    "connect",
    "2026-12-02T10:00:00Z",
    "not a date",
    "00000000-0000-4000-8000-000000000000",
    "",
    " ",
    "\u{0}",
    "é",
    "🚕",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(WORDS).prop_map(String::from),
        any::<String>(),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-200.0..200.0f64).prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(&[0.0, -0.0, 90.0, -90.0, 180.0, 360.0, 30_000.0, 50_000.0][..])
            .prop_map(Value::from),
    ]
}

/// Any JSON value, up to four levels deep.
pub fn json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            object_of(inner),
        ]
    })
    .boxed()
}

/// A JSON object whose keys are mostly the contract's, with values from `values`.
pub fn object_of(values: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(String::from),
        1 => any::<String>(),
    ];
    prop::collection::vec((key, values), 0..10)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
}

/// A JSON object of contract keys and any values: the shape outside input usually has.
pub fn json_object() -> impl Strategy<Value = Value> {
    object_of(json())
}
