//! Per-user limits (`docs/spec/lifecycle.md`, "Connection limits"), both cluster-wide
//! through the state engine:
//! - `HANDSHAKE_RATE_PER_USER`: counted after the signature, before the database, so a flood of
//!   validly signed tokens does not reach PostgreSQL;
//! - `MAX_SOCKETS_PER_USER` per namespace: one more replaces the user's oldest socket.
//!
//! And one per connection: a client that keeps sending CONNECT on one Engine.IO connection after
//! refusals has its transport closed, so each further try costs it a new connection.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use shared::{
    events::{AUTH_CONNECTION_REPLACED, ConnectionReplaced},
    namespace::Namespace,
};
use socketioxide::{SocketIo, adapter::Adapter, extract::SocketRef};

use super::deliver::{Recipient, disconnect, send};
use super::services::Services;
use crate::{
    auth::handshake::{HandshakeError, TokenClaims},
    telemetry::metrics::{self, DisconnectReason},
};

/// How long a handshake waits for the rate check: a Redis that does not answer (an outage waits
/// for the command timeout, 3 s) must not hold every handshake.
const RATE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

/// Refused CONNECTs one Engine.IO connection may send before its transport is closed: enough
/// for a client whose every namespace is refused once, and a retry.
pub const REFUSED_CONNECTS_PER_CONNECTION: u32 = 3;

/// Refused CONNECTs of one Engine.IO connection, kept in its opening request's extensions
/// (which every namespace socket of the connection shares).
#[derive(Debug, Clone, Default)]
pub struct RefusedConnects(Arc<AtomicU32>);

/// Counts a refused CONNECT on `s`'s connection; past the allowance, closes the transport.
pub fn refused<A: Adapter>(s: &SocketRef<A>) {
    let Some(count) = s.req_parts().extensions.get::<RefusedConnects>() else {
        return;
    };
    if count.0.fetch_add(1, Ordering::Relaxed) + 1 > REFUSED_CONNECTS_PER_CONNECTION {
        tracing::info!(socket = %s.id, "CONNECT refused too often on one connection; closing it");
        metrics::session_disconnects(DisconnectReason::ConnectFlood, 1);
        s.close_transport();
    }
}

/// `HANDSHAKE_RATE_PER_USER`: `Err(TooManyConnections)` past the limit. With the state store
/// down the handshake goes on (the limit protects the database; it must not lock users out).
pub async fn check_handshake_rate(
    svc: &Services,
    claims: &TokenClaims,
) -> Result<(), HandshakeError> {
    let limits = &svc.lifetime;
    if limits.handshake_rate == 0 {
        return Ok(());
    }
    let counted = tokio::time::timeout(
        RATE_CHECK_TIMEOUT,
        svc.state
            .handshake_allowed(&claims.sub, limits.handshake_rate, limits.handshake_window),
    )
    .await;
    match counted {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(HandshakeError::TooManyConnections),
        Ok(Err(error)) => {
            metrics::redis_error("handshake_rate");
            tracing::warn!(%error, "handshake rate not checked: state unavailable");
            Ok(())
        }
        Err(_) => {
            metrics::redis_error("handshake_rate");
            tracing::warn!("handshake rate not checked: state too slow");
            Ok(())
        }
    }
}

/// `MAX_SOCKETS_PER_USER`: registers the new socket `s` of `user` and replaces the user's
/// sockets beyond the limit in this namespace, wherever they are connected.
pub async fn register<A: Adapter>(
    svc: &Services,
    io: &SocketIo<A>,
    ns: Namespace,
    user: &str,
    s: &SocketRef<A>,
) {
    let limits = &svc.lifetime;
    if limits.max_sockets_per_user == 0 {
        return;
    }
    let me = s.id.to_string();
    let replaced = match svc
        .state
        .user_socket_opened(ns, user, &me, limits.max_sockets_per_user)
        .await
    {
        Ok(replaced) => replaced,
        Err(error) => {
            metrics::redis_error("user_sockets");
            tracing::warn!(%error, "socket limit not applied: state unavailable");
            return;
        }
    };
    let notice = ConnectionReplaced { by: me };
    for old in &replaced {
        let to = Recipient::Socket(ns, old.clone());
        let log = svc.recovery.as_deref();
        if let Err(error) = send(io, log, &to, AUTH_CONNECTION_REPLACED, &notice).await {
            tracing::warn!(%error, "cannot tell a replaced socket");
        }
        if let Err(error) = disconnect(io, &to).await {
            tracing::warn!(%error, "cannot disconnect a replaced socket");
        }
        tracing::info!(nsp = %ns, user, replaced = old, by = %s.id, "oldest socket replaced");
    }
    metrics::session_disconnects(DisconnectReason::Replaced, replaced.len());
}

/// The socket `s` of `user` closed: it no longer counts against the limit.
pub async fn unregister<A: Adapter>(svc: &Services, ns: Namespace, user: &str, s: &SocketRef<A>) {
    if svc.lifetime.max_sockets_per_user == 0 {
        return;
    }
    if let Err(error) = svc
        .state
        .user_socket_closed(ns, user, &s.id.to_string())
        .await
    {
        metrics::redis_error("user_sockets");
        tracing::warn!(%error, "closed socket not unregistered: state unavailable");
    }
}
