//! The handshake of every namespace: the contract's nine steps, in order, each failure a
//! [`HandshakeError`] whose `Display` is exactly the `connect_error` message the client sees.

use axum::http::{HeaderMap, header::AUTHORIZATION};
use serde_json::Value;
use shared::namespace::{Namespace, UserType};
use tracing::field::Empty;
use uuid::Uuid;

use super::jwt::{TokenError, TokenVerifier};
use crate::{
    store::postgres::{IdentityRow, PgStore, StoreError},
    telemetry::traces,
};

/// Why a connection was refused. The messages are part of the public contract: clients switch
/// on them (see the connection guide), so they never carry detail.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("Missing token")]
    MissingToken,
    #[error("Invalid token")]
    InvalidToken,
    #[error("Access expired")]
    AccessExpired,
    #[error("Missing sub/sid")]
    MissingSubOrSid,
    /// `HANDSHAKE_RATE_PER_USER`: checked after the signature, before the database.
    #[error("Too many connections")]
    TooManyConnections,
    #[error("User not found")]
    UserNotFound,
    #[error("Wrong userType")]
    WrongUserType,
    #[error("User inactive")]
    UserInactive,
    #[error("Invalid session")]
    InvalidSession,
    /// The detail is logged by the caller, never sent.
    #[error("Service unavailable")]
    Unavailable(#[source] StoreError),
    /// `MAX_PENDING_HANDSHAKES` in progress on this replica: refused at once, before any work,
    /// rather than queued past the client's timeout (its reconnect backoff spreads the storm).
    #[error("Service unavailable")]
    Overloaded,
}

impl HandshakeError {
    /// A short stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::AccessExpired => "access_expired",
            Self::MissingSubOrSid => "missing_sub_sid",
            Self::TooManyConnections => "too_many_connections",
            Self::UserNotFound => "user_not_found",
            Self::WrongUserType => "wrong_user_type",
            Self::UserInactive => "user_inactive",
            Self::InvalidSession => "invalid_session",
            Self::Unavailable(_) => "unavailable",
            Self::Overloaded => "overloaded",
        }
    }
}

/// Who a connected socket belongs to; stored on the socket after a successful handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: Uuid,
    /// The token's `sid` claim (`sessions.jti`).
    pub sid: String,
    /// `sessions.id`.
    pub session_id: Uuid,
    pub session_type: Option<String>,
    pub user_type: UserType,
    pub org_id: Option<String>,
    /// When this socket's access ends: the earlier of the token's `exp` and the session's
    /// `access_token_expires_at`, in milliseconds since the epoch.
    pub expires_at_ms: u64,
}

/// Runs the handshake against the token verifier and the identity store.
pub struct Gatekeeper {
    verifier: TokenVerifier,
    store: PgStore,
    /// This replica's `NODE_ID`, for the handshake span.
    node: String,
}

impl Gatekeeper {
    pub fn new(verifier: TokenVerifier, store: PgStore, node: String) -> Self {
        Self {
            verifier,
            store,
            node,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Steps 2 and 3: signature, algorithm, expiry, then `sub` and `sid`. No I/O: shared by the
    /// handshake and an in-band refresh.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, HandshakeError> {
        let verify = tracing::info_span!("jwt.verify", gateway.outcome = Empty);
        let claims = verify.in_scope(|| self.verifier.verify(token));
        verify.record(
            "gateway.outcome",
            match &claims {
                Ok(_) => "ok",
                Err(TokenError::Invalid) => HandshakeError::InvalidToken.label(),
                Err(TokenError::Expired) => HandshakeError::AccessExpired.label(),
            },
        );
        let claims = claims.map_err(|e| match e {
            TokenError::Invalid => HandshakeError::InvalidToken,
            TokenError::Expired => HandshakeError::AccessExpired,
        })?;
        let (Some(Value::String(sub)), Some(Value::String(sid))) = (claims.sub, claims.sid) else {
            return Err(HandshakeError::MissingSubOrSid);
        };
        // The verifier refuses a token without `exp`.
        let exp = claims.exp.ok_or(HandshakeError::InvalidToken)?;
        Ok(TokenClaims { sub, sid, exp })
    }

    /// Steps 4 to 8: the user and the session, in one round trip to the database.
    pub async fn identify(
        &self,
        ns: Namespace,
        claims: TokenClaims,
    ) -> Result<Identity, HandshakeError> {
        // 4. a `sub` that is no UUID names no user: no need to ask the database.
        let user_id = Uuid::parse_str(&claims.sub).map_err(|_| HandshakeError::UserNotFound)?;
        let query = tracing::info_span!(
            "SELECT users",
            otel.kind = "client",
            db.system.name = "postgresql",
            db.operation.name = "SELECT",
            db.collection.name = "users",
        );
        let row = traces::leaf(query, self.store.identity(user_id, &claims.sid))
            .await
            .map_err(HandshakeError::Unavailable)?;
        decide(ns, user_id, &claims, row)
    }
}

/// What a verified token says (steps 2 and 3 passed): who, and which session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The `sub` claim: a user id, not yet looked up.
    pub sub: String,
    /// The `sid` claim (`sessions.jti`).
    pub sid: String,
    /// The `exp` claim, seconds since the epoch.
    pub exp: u64,
}

/// Step 1: `auth.token` when it is a non-empty string, else `Authorization: Bearer <token>`.
pub fn token_from<'a>(auth: Option<&'a Value>, headers: &'a HeaderMap) -> Option<&'a str> {
    if let Some(token) = auth
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Some(token);
    }
    let header = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Steps 4 to 8 on the row read from the database.
fn decide(
    ns: Namespace,
    user_id: Uuid,
    claims: &TokenClaims,
    row: Option<IdentityRow>,
) -> Result<Identity, HandshakeError> {
    let row = row.ok_or(HandshakeError::UserNotFound)?;
    let user_type = UserType::parse(&row.user_type)
        .filter(|t| ns.admits(*t))
        .ok_or(HandshakeError::WrongUserType)?;
    if row.status != "ACTIVE" {
        return Err(HandshakeError::UserInactive);
    }
    let session = row
        .session
        .filter(|s| !s.revoked && s.user_id == user_id)
        .ok_or(HandshakeError::InvalidSession)?;
    if session.access_expired {
        return Err(HandshakeError::AccessExpired);
    }
    let token_ends = claims.exp.saturating_mul(1000);
    let session_ends = session
        .access_expires_at_ms
        .map_or(u64::MAX, |ms| u64::try_from(ms).unwrap_or(0));
    Ok(Identity {
        user_id,
        sid: claims.sid.clone(),
        expires_at_ms: token_ends.min(session_ends),
        session_id: session.id,
        session_type: session.session_type,
        user_type,
        org_id: row.org_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::SessionRow;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(auth).expect("header"));
        h
    }

    #[test]
    fn token_comes_from_auth_then_header() {
        let none = HeaderMap::new();
        let auth = json!({"token": "a"});
        assert_eq!(token_from(Some(&auth), &headers("Bearer b")), Some("a"));
        assert_eq!(token_from(None, &headers("Bearer b")), Some("b"));
        assert_eq!(token_from(None, &headers("bearer  b ")), Some("b"));
        assert_eq!(
            token_from(Some(&json!({"token": ""})), &headers("Bearer b")),
            Some("b")
        );
        assert_eq!(
            token_from(Some(&json!({"token": 123})), &headers("Bearer b")),
            Some("b")
        );
        for bad in [
            json!(42),
            json!({"token": 123}),
            json!({"token": ""}),
            json!(null),
            json!("x"),
        ] {
            assert_eq!(token_from(Some(&bad), &none), None, "{bad}");
        }
        assert_eq!(token_from(None, &headers("Basic abc")), None);
        assert_eq!(token_from(None, &headers("Bearer ")), None);
    }

    fn row(user_type: &str, status: &str, session: Option<SessionRow>) -> Option<IdentityRow> {
        Some(IdentityRow {
            user_type: user_type.into(),
            status: status.into(),
            org_id: None,
            session,
        })
    }

    fn session(user_id: Uuid) -> SessionRow {
        SessionRow {
            id: Uuid::new_v4(),
            user_id,
            session_type: Some("mobile".into()),
            revoked: false,
            access_expired: false,
            access_expires_at_ms: None,
        }
    }

    fn outcome(ns: Namespace, user: Uuid, r: Option<IdentityRow>) -> &'static str {
        let claims = TokenClaims {
            sub: user.to_string(),
            sid: "sid".into(),
            exp: 2_000_000_000,
        };
        match decide(ns, user, &claims, r) {
            Ok(_) => "ok",
            Err(e) => e.label(),
        }
    }

    #[test]
    fn a_socket_expires_at_the_earlier_of_token_and_session() {
        let u = Uuid::new_v4();
        let claims = TokenClaims {
            sub: u.to_string(),
            sid: "s".into(),
            exp: 2_000,
        };
        let ends = |session_ms: Option<i64>| {
            let s = SessionRow {
                access_expires_at_ms: session_ms,
                ..session(u)
            };
            decide(
                Namespace::Drivers,
                u,
                &claims,
                row("DRIVER", "ACTIVE", Some(s)),
            )
            .expect("admitted")
            .expires_at_ms
        };
        assert_eq!(ends(None), 2_000_000);
        assert_eq!(ends(Some(1_500_500)), 1_500_500);
        assert_eq!(ends(Some(2_500_000)), 2_000_000);
    }

    #[test]
    fn steps_four_to_eight_in_order() {
        let u = Uuid::new_v4();
        let d = Namespace::Drivers;
        assert_eq!(outcome(d, u, None), "user_not_found");
        // user type is checked before status, status before the session
        assert_eq!(
            outcome(d, u, row("PASSENGER", "SUSPENDED", None)),
            "wrong_user_type"
        );
        assert_eq!(
            outcome(d, u, row("ALIEN", "ACTIVE", None)),
            "wrong_user_type"
        );
        assert_eq!(
            outcome(d, u, row("DRIVER", "INACTIVE", None)),
            "user_inactive"
        );
        assert_eq!(
            outcome(d, u, row("DRIVER", "ACTIVE", None)),
            "invalid_session"
        );
        let revoked = SessionRow {
            revoked: true,
            access_expired: true,
            ..session(u)
        };
        assert_eq!(
            outcome(d, u, row("DRIVER", "ACTIVE", Some(revoked))),
            "invalid_session"
        );
        let foreign = session(Uuid::new_v4());
        assert_eq!(
            outcome(d, u, row("DRIVER", "ACTIVE", Some(foreign))),
            "invalid_session"
        );
        let expired = SessionRow {
            access_expired: true,
            ..session(u)
        };
        assert_eq!(
            outcome(d, u, row("DRIVER", "ACTIVE", Some(expired))),
            "access_expired"
        );
        assert_eq!(
            outcome(d, u, row("DRIVER", "ACTIVE", Some(session(u)))),
            "ok"
        );
        for role in ["ADMIN", "DISPATCHER", "SUPPORT"] {
            assert_eq!(
                outcome(Namespace::Admin, u, row(role, "ACTIVE", Some(session(u)))),
                "ok"
            );
        }
    }

    #[test]
    fn messages_are_the_contracts() {
        let texts: Vec<String> = [
            HandshakeError::MissingToken,
            HandshakeError::InvalidToken,
            HandshakeError::AccessExpired,
            HandshakeError::MissingSubOrSid,
            HandshakeError::UserNotFound,
            HandshakeError::WrongUserType,
            HandshakeError::UserInactive,
            HandshakeError::InvalidSession,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            texts,
            [
                "Missing token",
                "Invalid token",
                "Access expired",
                "Missing sub/sid",
                "User not found",
                "Wrong userType",
                "User inactive",
                "Invalid session"
            ]
        );
    }
}

/// Step 1 on whatever a client puts in `auth` and the `Authorization` header.
#[cfg(test)]
mod props {
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{json, json_object};

    proptest! {
        #[test]
        fn the_token_is_the_auth_string_or_a_bearer_header_never_a_panic(
            auth in prop_oneof![json(), json_object()],
            header in prop_oneof![any::<Vec<u8>>(), any::<String>().prop_map(|t| format!("Bearer {t}").into_bytes())],
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&header) {
                headers.insert(AUTHORIZATION, value);
            }
            let found = token_from(Some(&auth), &headers);
            if let Some(token) = auth.get("token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                prop_assert_eq!(found, Some(token));
            }
            prop_assert!(found.is_none_or(|t| !t.is_empty()));
        }
    }
}
