//! `POST /internal/v1/emit`: generic push to rooms of the contract's kinds, cluster-wide. The
//! answer says how many of this replica's sockets could not queue the push (their transports
//! were closed, so those clients reconnect) and, when the body asks (`"count": true`), how many
//! sockets were in those rooms cluster-wide (`null` when a replica did not answer within a
//! second).
//!
//! The count is asked for, not given by default: it is a round trip to every replica through
//! Redis, and cost 40% of the gateway's CPU per pushed message (docs/performance-history.md).

use axum::{Json, extract::State};
use serde_json::{Value, json};
use shared::{events::is_reserved, namespace::Namespace, rooms::is_pushable};

use crate::realtime::deliver::Recipient;

use super::{body::JsonBody, error::ApiError, fields, state::InternalState};

const MAX_ROOMS: usize = 1_000;
const MAX_EVENT_CHARS: usize = 128;

pub async fn emit(
    State(state): State<InternalState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let live = state.live()?;
    let Push {
        ns,
        rooms,
        event,
        data,
        count,
    } = parse(body)?;
    let to = Recipient::Rooms(ns, rooms.clone());
    // Boxed: delivering is a future of kilobytes, and axum moves the handler's future.
    let deliver = Box::pin(live.delivery.send(&to, &event, &data));
    if !count {
        let emitted = deliver.await?;
        return Ok(Json(json!({ "ok": true, "dropped": emitted.dropped })));
    }
    // The count asks every replica: the push does not wait for it.
    let (sockets, emitted) = tokio::join!(Box::pin(live.delivery.io.count(ns, rooms)), deliver);
    let emitted = emitted?;
    Ok(Json(
        json!({ "ok": true, "sockets": sockets, "dropped": emitted.dropped }),
    ))
}

/// A push's body, checked.
#[derive(Debug)]
struct Push {
    ns: Namespace,
    rooms: Vec<String>,
    event: String,
    data: Value,
    /// Whether the answer counts the rooms' sockets cluster-wide.
    count: bool,
}

fn parse(body: Value) -> Result<Push, ApiError> {
    let mut body = fields::object(body)?;
    let invalid = |m: &str| ApiError::InvalidPayload(m.into());
    let ns = body
        .get("namespace")
        .and_then(Value::as_str)
        .and_then(Namespace::from_path)
        .ok_or_else(|| invalid("namespace must be /drivers, /passengers or /admin"))?;
    let rooms: Vec<String> = match body.get("rooms") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_ROOMS => items
            .iter()
            .map(|r| match r.as_str() {
                Some(room) if is_pushable(room) => Ok(room.to_owned()),
                _ => Err(invalid(
                    "rooms must be driver:{id}, passenger:{id}, session:{sid}, admin:all or admin:org:{id}",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(invalid("rooms must be a non-empty array of room names")),
    };
    let event = match body.get("event").and_then(Value::as_str) {
        Some(e) if e.is_empty() || e.chars().count() > MAX_EVENT_CHARS => {
            return Err(invalid(
                "event must be a non-empty string of at most 128 characters",
            ));
        }
        Some(e) if is_reserved(e) => return Err(invalid("event is a reserved name")),
        Some(e) => e.to_owned(),
        None => return Err(invalid("event is required")),
    };
    let count = match body.get("count") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(count)) => *count,
        Some(_) => return Err(invalid("count must be true or false")),
    };
    let data = body.remove("data").unwrap_or(Value::Null);
    Ok(Push {
        ns,
        rooms,
        event,
        data,
        count,
    })
}

/// Push bodies from any backend: only pushable rooms and unreserved events get through.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{json, json_object};

    proptest! {
        #[test]
        fn any_body_is_decoded_or_refused(body in prop_oneof![json(), json_object()]) {
            match parse(body) {
                Ok(push) => {
                    prop_assert!(!push.rooms.is_empty() && push.rooms.len() <= MAX_ROOMS);
                    prop_assert!(push.rooms.iter().all(|r| is_pushable(r)));
                    prop_assert!(!push.event.is_empty() && !is_reserved(&push.event));
                }
                Err(error) => prop_assert!(matches!(error, ApiError::InvalidPayload(_))),
            }
        }
    }
}
