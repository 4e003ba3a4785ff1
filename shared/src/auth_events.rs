//! Auth events from the auth service: the bodies of the internal HTTP API and the JSON
//! published on the `{REDIS_PREFIX}:auth-events` channel.

use serde::{Deserialize, Serialize};

/// Reason given in `auth:session_revoked` when the publisher gave none.
pub const DEFAULT_REVOKE_REASON: &str = "revoked";

/// One message of the auth-events channel, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AuthEvent {
    /// `{"type":"session.revoked","sid","userId","reason","at"}`
    #[serde(rename = "session.revoked", rename_all = "camelCase")]
    SessionRevoked {
        sid: String,
        user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// `{"type":"session.refreshed","oldSid","newSid","userId"}`
    #[serde(rename = "session.refreshed", rename_all = "camelCase")]
    SessionRefreshed {
        old_sid: String,
        new_sid: String,
        user_id: String,
    },
}

impl AuthEvent {
    /// The `type` tag, as in metrics and spans.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SessionRevoked { .. } => "session.revoked",
            Self::SessionRefreshed { .. } => "session.refreshed",
        }
    }
}

/// One message of the channel: an [`AuthEvent`] and, optionally, the W3C trace context of
/// whoever published it (`"traceparent"`, `"tracestate"` beside the event's fields). A trace
/// field of the wrong type is ignored, never a reason to drop the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthEventMessage {
    #[serde(flatten)]
    pub event: AuthEvent,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_nothing"
    )]
    pub traceparent: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_nothing"
    )]
    pub tracestate: Option<String>,
}

fn string_or_nothing<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

/// Body of `POST /internal/v1/sessions/{sid}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeRequest {
    pub user_id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `POST /internal/v1/sessions/{oldSid}/refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    pub user_id: String,
    pub new_sid: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_forms_of_the_contract_parse() {
        let revoked: AuthEvent = serde_json::from_str(
            r#"{"type":"session.revoked","sid":"s1","userId":"u1","reason":"logout","at":"2026-01-01T00:00:00Z"}"#,
        )
        .expect("revoked parses");
        assert_eq!(
            revoked,
            AuthEvent::SessionRevoked {
                sid: "s1".into(),
                user_id: "u1".into(),
                reason: Some("logout".into()),
                at: Some("2026-01-01T00:00:00Z".into()),
            }
        );
        let refreshed: AuthEvent = serde_json::from_str(
            r#"{"type":"session.refreshed","oldSid":"a","newSid":"b","userId":"u1"}"#,
        )
        .expect("refreshed parses");
        assert!(
            matches!(refreshed, AuthEvent::SessionRefreshed { ref old_sid, .. } if old_sid == "a")
        );
    }

    #[test]
    fn messages_carry_trace_context_beside_the_event() {
        let m: AuthEventMessage = serde_json::from_str(
            r#"{"type":"session.revoked","sid":"s1","userId":"u1","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#,
        )
        .expect("parses");
        assert_eq!(m.event.kind(), "session.revoked");
        assert_eq!(
            m.traceparent.as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let round: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&m).expect("json")).expect("json");
        assert_eq!(round["type"], "session.revoked");
        assert_eq!(round["sid"], "s1");
        assert!(round["traceparent"].is_string());
        assert!(round.get("tracestate").is_none());

        // No context, or a context of the wrong type: the event still counts.
        let m: AuthEventMessage = serde_json::from_str(
            r#"{"type":"session.refreshed","oldSid":"a","newSid":"b","userId":"u1","traceparent":42}"#,
        )
        .expect("parses");
        assert_eq!(m.traceparent, None);
        assert_eq!(m.event.kind(), "session.refreshed");
    }

    #[test]
    fn unknown_types_and_missing_fields_are_refused() {
        assert!(
            serde_json::from_str::<AuthEvent>(r#"{"type":"session.exploded","sid":"s"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<AuthEvent>(r#"{"type":"session.revoked","userId":"u"}"#)
                .is_err()
        );
    }
}

/// What arrives on the auth-events channel comes from anyone who can publish there.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    fn id() -> impl Strategy<Value = String> {
        any::<String>()
    }

    fn event() -> impl Strategy<Value = AuthEvent> {
        prop_oneof![
            (
                id(),
                id(),
                proptest::option::of(id()),
                proptest::option::of(id())
            )
                .prop_map(|(sid, user_id, reason, at)| AuthEvent::SessionRevoked {
                    sid,
                    user_id,
                    reason,
                    at
                }),
            (id(), id(), id()).prop_map(|(old_sid, new_sid, user_id)| {
                AuthEvent::SessionRefreshed {
                    old_sid,
                    new_sid,
                    user_id,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_never_panic(bytes in any::<Vec<u8>>()) {
            let _ = serde_json::from_slice::<AuthEventMessage>(&bytes);
        }

        #[test]
        fn any_json_object_with_a_type_decodes_or_fails(
            kind in prop_oneof![Just("session.revoked".to_string()), Just("session.refreshed".to_string()), any::<String>()],
            fields in proptest::collection::vec((prop_oneof![Just("sid".to_string()), Just("userId".to_string()), Just("oldSid".to_string()), Just("newSid".to_string()), Just("traceparent".to_string()), any::<String>()], any::<i64>().prop_map(serde_json::Value::from)), 0..6),
        ) {
            let mut object: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
            object.insert("type".into(), kind.into());
            let _ = serde_json::from_value::<AuthEventMessage>(serde_json::Value::Object(object));
        }

        #[test]
        fn every_event_survives_the_channel(event in event(), traceparent in proptest::option::of(any::<String>())) {
            let message = AuthEventMessage { event, traceparent, tracestate: None };
            let wire = serde_json::to_vec(&message).expect("encode");
            prop_assert_eq!(serde_json::from_slice::<AuthEventMessage>(&wire).expect("decode"), message);
        }
    }
}
