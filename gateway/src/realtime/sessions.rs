//! Session revocation and refresh: the auth events of the contract, made cluster-wide.
//!
//! Both ingress paths end in [`SessionEvents::apply_locally`], run once on every replica:
//! - the Redis channel `{prefix}:auth-events`, which every replica hears;
//! - the internal HTTP API, which in cluster mode publishes the event on that same channel
//!   (so each socket gets one notice whichever path an event took), and applies it directly on
//!   a single replica.

use fred::{
    clients::{Client, SubscriberClient},
    interfaces::{ClientLike, EventInterface, PubsubInterface},
};
use std::{sync::Arc, time::Instant};

use shared::{
    auth_events::{AuthEvent, AuthEventMessage, DEFAULT_REVOKE_REASON},
    events::SessionRevokedNotice,
    namespace::Namespace,
    rooms,
};
use socketioxide::{SocketIo, adapter::Adapter};
use tracing::{Instrument, Span, field::Empty};

use super::{deliver::Recipient, io::Io, notices::RevocationNotices};
use crate::telemetry::{
    metrics::{self, AuthEventSource, DisconnectReason},
    traces::{self, redis_span},
};
use crate::{clock::now_rfc3339, tasks::Tasks};
/// What applying an event did on this replica.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LocalEffect {
    /// Sockets of the session that were disconnected.
    pub disconnected: usize,
    /// Other sockets of the user that received `auth:session_revoked`.
    pub notified: usize,
}

/// Why an event could not be made cluster-wide.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the auth-events channel is unreachable: {0}")]
    Redis(#[from] fred::error::Error),
}

/// Applies auth events on this replica and publishes them to the others.
pub struct SessionEvents {
    io: Io,
    /// Cluster mode: where events are published. `None` on a single replica.
    publisher: Option<(Client, String)>,
    /// The user's other sockets are told once of a revoked session.
    notices: Arc<RevocationNotices>,
}

impl SessionEvents {
    pub fn new(
        io: Io,
        publisher: Option<(Client, String)>,
        notices: Arc<RevocationNotices>,
    ) -> Self {
        Self {
            io,
            publisher,
            notices,
        }
    }

    /// HTTP ingress: make the event's effect cluster-wide. Returns how many replicas heard it
    /// (cluster) or what it did here (single replica).
    /// The message carries the caller's trace context, so every replica's `gateway.auth_event`
    /// span joins the caller's trace.
    pub async fn publish(&self, event: AuthEvent) -> Result<Published, PublishError> {
        let received = Instant::now();
        let event = stamped(event);
        let Some((client, channel)) = &self.publisher else {
            let effect = self
                .apply_locally(&event, AuthEventSource::Http, received, None)
                .await;
            return Ok(Published::Applied(effect));
        };
        let (traceparent, tracestate) = traces::context_of(&Span::current()).unzip();
        let message = AuthEventMessage {
            event,
            traceparent,
            tracestate: tracestate.flatten(),
        };
        let payload = serde_json::to_string(&message).unwrap_or_default();
        let published = if client.is_connected() {
            let publish = client.publish::<u64, _, _>(channel.as_str(), payload);
            traces::leaf(redis_span("PUBLISH", "PUBLISH auth-events"), publish).await
        } else {
            // fred would hold the message until it reconnects: fail now, apply locally below.
            Err(fred::error::Error::new(
                fred::error::ErrorKind::IO,
                "Redis connection down",
            ))
        };
        match published {
            Ok(replicas) => Ok(Published::Broadcast { replicas }),
            Err(error) => {
                metrics::redis_error("publish");
                // Redis is down: at least the sockets of this replica go now. The caller answers
                // 503 so the auth service retries once the cluster can hear it.
                self.apply_locally(&message.event, AuthEventSource::Http, received, None)
                    .await;
                Err(error.into())
            }
        }
    }

    /// Channel ingress: one message of `{prefix}:auth-events`, as published by anyone.
    pub async fn on_message(&self, payload: &[u8]) {
        let received = Instant::now();
        match serde_json::from_slice::<AuthEventMessage>(payload) {
            Ok(message) => {
                let parent = traces::parent_from(
                    message.traceparent.as_deref(),
                    message.tracestate.as_deref(),
                );
                self.apply_locally(
                    &stamped(message.event),
                    AuthEventSource::Redis,
                    received,
                    parent,
                )
                .await;
            }
            Err(error) => {
                tracing::warn!(%error, bytes = payload.len(), "ignored malformed auth event")
            }
        }
    }

    /// The contract's effect, on this replica's sockets only: one `gateway.auth_event` span
    /// (child of `parent`, the publisher's context, when there is one), counted.
    pub async fn apply_locally(
        &self,
        event: &AuthEvent,
        source: AuthEventSource,
        received: Instant,
        parent: Option<opentelemetry::Context>,
    ) -> LocalEffect {
        let span = tracing::info_span!(
            "gateway.auth_event",
            otel.kind = "consumer",
            "gateway.auth_event.type" = event.kind(),
            gateway.disconnected = Empty,
        );
        traces::set_parent(&span, parent);
        // A session is revoked once, whoever repeats it (the auth service retrying, several
        // replicas' re-validation): its user's other sockets hear about it once.
        let announce = match event {
            AuthEvent::SessionRevoked { sid, .. } => self.notices.first_time(sid),
            AuthEvent::SessionRefreshed { .. } => false,
        };
        let notices = &*self.notices;
        let effect = on_io!(&self.io, io => apply(io, notices, event, announce)
            .instrument(span.clone())
            .await);
        span.record("gateway.disconnected", effect.disconnected as u64);
        let reason = match event {
            AuthEvent::SessionRevoked { .. } => DisconnectReason::Revoked,
            AuthEvent::SessionRefreshed { .. } => DisconnectReason::Refreshed,
        };
        metrics::session_disconnects(reason, effect.disconnected);
        metrics::auth_event_applied(event.kind(), source, received);
        let _entered = span.enter();
        match event {
            AuthEvent::SessionRevoked { sid, user_id, .. } => tracing::info!(
                sid,
                user = user_id,
                disconnected = effect.disconnected,
                notified = effect.notified,
                "session revoked"
            ),
            AuthEvent::SessionRefreshed {
                old_sid, user_id, ..
            } => tracing::info!(
                sid = old_sid,
                user = user_id,
                disconnected = effect.disconnected,
                "session refreshed"
            ),
        }
        effect
    }

    /// Subscribes to the auth-events channel, then hears it until the replica stops (`tasks`),
    /// re-subscribing after every reconnect.
    pub async fn listen(
        self: std::sync::Arc<Self>,
        client: SubscriberClient,
        channel: String,
        tasks: &Tasks,
    ) -> Result<(), fred::error::Error> {
        // Take the receivers before subscribing, so no message falls in between.
        let mut messages = client.message_rx();
        let mut reconnects = client.reconnect_rx();
        client.subscribe(channel.as_str()).await?;
        let resubscriber = client.clone();
        tasks.spawn("restore auth-events subscription", async move {
            while reconnects.recv().await.is_ok() {
                match resubscriber.subscribe(channel.as_str()).await {
                    Ok(()) => tracing::info!("auth-events subscription restored"),
                    Err(error) => {
                        tracing::warn!(%error, "cannot restore the auth-events subscription")
                    }
                }
            }
        });
        tasks.spawn("auth-events listener", async move {
            loop {
                match messages.recv().await {
                    Ok(message) => match message.value.as_bytes() {
                        Some(bytes) => self.on_message(bytes).await,
                        None => tracing::warn!("ignored non-binary auth event"),
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(lost)) => {
                        tracing::error!(lost, "auth events lost: listener lagged")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(())
    }
}

/// The outcome of [`SessionEvents::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Cluster mode: published; `replicas` subscribers heard it.
    Broadcast { replicas: u64 },
    /// Single replica: applied here.
    Applied(LocalEffect),
}

/// Fills `at` of a revocation that came without one, and spells a UUID user id the way rooms
/// spell it (lowercase, hyphenated), whatever spelling the publisher used.
fn stamped(mut event: AuthEvent) -> AuthEvent {
    let (AuthEvent::SessionRevoked { user_id, .. } | AuthEvent::SessionRefreshed { user_id, .. }) =
        &mut event;
    if let Ok(id) = uuid::Uuid::parse_str(user_id) {
        *user_id = id.to_string();
    }
    if let AuthEvent::SessionRevoked { at, .. } = &mut event {
        at.get_or_insert_with(now_rfc3339);
    }
    event
}

/// Applies `event` to this replica's sockets; `announce`: also notify the user's other sockets.
async fn apply<A: Adapter>(
    io: &SocketIo<A>,
    notices: &RevocationNotices,
    event: &AuthEvent,
    announce: bool,
) -> LocalEffect {
    match event {
        AuthEvent::SessionRevoked {
            sid,
            user_id,
            reason,
            at,
        } => {
            let disconnected = disconnect_session(io, sid).await;
            if !announce {
                return LocalEffect {
                    disconnected,
                    notified: 0,
                };
            }
            let notice = SessionRevokedNotice {
                sid: sid.clone(),
                reason: reason
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REVOKE_REASON.into()),
                at: at.clone().unwrap_or_else(now_rfc3339),
            };
            // The user is a driver or a passenger (admins get no notice): one of these is empty.
            let mut notified = 0;
            for to in [
                Recipient::Driver(user_id.clone()),
                Recipient::Passenger(user_id.clone()),
            ] {
                let except = Some(rooms::session(sid));
                notified += notices.notify(io, &to, except, sid, &notice).await;
            }
            LocalEffect {
                disconnected,
                notified,
            }
        }
        AuthEvent::SessionRefreshed { old_sid, .. } => LocalEffect {
            disconnected: disconnect_session(io, old_sid).await,
            notified: 0,
        },
    }
}

/// Disconnects this replica's sockets of session `sid` in every namespace (the client sees
/// `io server disconnect` and does not reconnect by itself).
async fn disconnect_session<A: Adapter>(io: &SocketIo<A>, sid: &str) -> usize {
    let mut disconnected = 0;
    for ns in Namespace::ALL {
        let Some(op) = io.of(ns.path()) else { continue };
        let op = op.local().within(rooms::session(sid));
        disconnected += op.clone().sockets().len();
        if let Err(error) = op.disconnect().await {
            tracing::warn!(%error, nsp = %ns, "cannot disconnect a session's sockets");
        }
    }
    disconnected
}
