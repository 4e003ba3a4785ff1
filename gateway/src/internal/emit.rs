//! `POST /internal/v1/emit`: generic push to rooms of the contract's kinds, cluster-wide. The
//! answer says how many of this replica's sockets could not queue the push (their transports
//! were closed, so those clients reconnect) and, when the body asks (`"count": true`), how many
//! sockets were in those rooms cluster-wide (`null` when a replica did not answer within a
//! second).
//!
//! The count is asked for, not given by default: it is a round trip to every replica through
//! Redis, and cost 40% of the gateway's CPU per pushed message (docs/performance-history.md).

use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::{events::is_reserved, namespace::Namespace, rooms::is_pushable};

use crate::{
    input::{self, Field, Flag, FromJson, Problem},
    realtime::deliver::Recipient,
};

use super::{
    body::JsonBody,
    error::{ApiError, NOT_AN_OBJECT},
    state::InternalState,
};

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

/// `namespace`: one of the three.
impl FromJson for Namespace {
    fn from_json(value: Value) -> Result<Self, Problem> {
        value
            .as_str()
            .and_then(Namespace::from_path)
            .ok_or_else(|| Problem::Whole(BAD_NAMESPACE.into()))
    }
}

const BAD_NAMESPACE: &str = "namespace must be /drivers, /passengers or /admin";
const BAD_ROOMS: &str = "rooms must be a non-empty array of room names";

/// `rooms`: up to [`MAX_ROOMS`] rooms a backend may push to.
struct Rooms(Vec<String>);

impl FromJson for Rooms {
    fn from_json(value: Value) -> Result<Self, Problem> {
        let Value::Array(items) = value else {
            return Err(Problem::Whole(BAD_ROOMS.into()));
        };
        if items.is_empty() || items.len() > MAX_ROOMS {
            return Err(Problem::Whole(BAD_ROOMS.into()));
        }
        items
            .into_iter()
            .map(|room| match room {
                Value::String(room) if is_pushable(&room) => Ok(room),
                _ => Err(Problem::Whole(
                    "rooms must be driver:{id}, passenger:{id}, session:{sid}, admin:all or admin:org:{id}".into(),
                )),
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// `event`: a name clients may receive from a backend.
struct EventName(String);

impl FromJson for EventName {
    fn from_json(value: Value) -> Result<Self, Problem> {
        match value {
            Value::String(e) if e.is_empty() || e.chars().count() > MAX_EVENT_CHARS => Err(
                Problem::Whole("event must be a non-empty string of at most 128 characters".into()),
            ),
            Value::String(e) if is_reserved(&e) => {
                Err(Problem::Whole("event is a reserved name".into()))
            }
            Value::String(e) => Ok(Self(e)),
            _ => Err(Problem::Absent),
        }
    }
}

#[derive(Deserialize)]
struct PushBody {
    #[serde(default)]
    namespace: Field<Namespace>,
    #[serde(default)]
    rooms: Field<Rooms>,
    #[serde(default)]
    event: Field<EventName>,
    #[serde(default)]
    count: Field<Flag>,
    #[serde(default)]
    data: Value,
}

fn parse(body: Value) -> Result<Push, ApiError> {
    let body: PushBody = input::decode(Some(body), NOT_AN_OBJECT)?;
    Ok(Push {
        ns: body.namespace.required_or("namespace", BAD_NAMESPACE)?,
        rooms: body.rooms.required_or("rooms", BAD_ROOMS)?.0,
        event: body.event.required("event")?.0,
        count: body.count.optional("count")?.is_some_and(|c| c.0),
        data: body.data,
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
