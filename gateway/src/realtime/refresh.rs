//! `auth:refresh`: a new access token for a connected socket, without a reconnect
//! (`docs/spec/lifecycle.md`, "In-band refresh").
//!
//! The token passes the handshake's steps 2-8 ([`Gatekeeper::verify`] and
//! [`Gatekeeper::identify`], the same code) for the socket's own user. A refusal is an ack with
//! the handshake's text and never disconnects: the socket keeps its old expiry.
//!
//! [`Gatekeeper::verify`]: crate::auth::handshake::Gatekeeper::verify
//! [`Gatekeeper::identify`]: crate::auth::handshake::Gatekeeper::identify

use std::sync::Arc;

use serde_json::{Value, json};
use shared::{events::AUTH_REFRESH, namespace::Namespace, rooms};
use socketioxide::{adapter::Adapter, extract::SocketRef};
use uuid::Uuid;

use super::{
    ack::{EventError, Reply, reply},
    context::SocketContext,
    events::on_event,
    expiry,
    services::Services,
};

/// `auth:refresh`, on every namespace's sockets.
pub fn wire<A: Adapter>(s: &SocketRef<A>, svc: &Arc<Services>, ns: Namespace) {
    on_event(
        s,
        svc,
        AUTH_REFRESH,
        move |svc, _, ctx, payload, s| async move { refresh(&svc, &s, ns, ctx, payload).await },
    );
}
use crate::{auth::handshake::HandshakeError, clock::rfc3339_ms};

pub async fn refresh<A: Adapter>(
    svc: &Services,
    s: &SocketRef<A>,
    ns: Namespace,
    current: Arc<SocketContext>,
    payload: Option<Value>,
) -> Result<Reply, EventError> {
    let token = payload
        .as_ref()
        .and_then(|p| p.get("token"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or(EventError::Unauthorized(HandshakeError::MissingToken))?;
    let claims = svc.gate.verify(token).map_err(EventError::Unauthorized)?;
    // Another user's token names no session of this socket's user.
    let same_user = Uuid::parse_str(&claims.sub).is_ok_and(|u| u.to_string() == current.user_id());
    if !same_user {
        return Err(EventError::Unauthorized(HandshakeError::InvalidSession));
    }
    let identity = svc.gate.identify(ns, claims).await.map_err(|e| match e {
        HandshakeError::Unavailable(cause) => {
            tracing::error!(socket = %s.id, error = %cause, "refresh failed: database down");
            EventError::Unavailable
        }
        refused => EventError::Unauthorized(refused),
    })?;
    let fresh = Arc::new(SocketContext::new(ns, identity));
    if fresh.sid() != current.sid() {
        // Join the new session's room before leaving the old one: the socket is always in the
        // room of a session that can end it.
        s.join(rooms::session(fresh.sid()));
        s.leave(rooms::session(current.sid()));
    }
    s.extensions.insert(fresh.clone());
    svc.deadlines.forget(ns, s.id, current.expires_at_ms);
    expiry::watch(&svc.deadlines, s, ns, fresh.expires_at_ms);
    tracing::info!(
        nsp = %ns, socket = %s.id, user = fresh.user_id(), sid = fresh.sid(),
        "socket refreshed"
    );
    Ok(reply([(
        "expiresAt",
        json!(rfc3339_ms(fresh.expires_at_ms)),
    )]))
}
