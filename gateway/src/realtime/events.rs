//! How a client event is wired to its handler: the flood budget, the socket's context, one span,
//! the acknowledgement of the outcome, and the count. Each namespace's file lists its events
//! with [`on_event`]; events no handler knows go to [`on_unknown`].

use std::{
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use serde_json::Value;
use shared::namespace::Namespace;
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{AckSender, Event, SocketRef, TryData},
};
use tracing::{Instrument, field::Empty};

use super::{
    ack::{self, EventError},
    context::SocketContext,
    services::Services,
    throttle::EventBudget,
};
use crate::telemetry::metrics;

/// Wires `event` to `handle`, with the flood budget, validation of the socket's context, and the
/// acknowledgement of the outcome (also for events sent without a callback: processed the same).
/// Each event is one span and is counted once its ack is sent.
pub fn on_event<A, F, Fut>(s: &SocketRef<A>, svc: &Arc<Services>, event: &'static str, handle: F)
where
    A: Adapter,
    F: Fn(Arc<Services>, SocketIo<A>, Arc<SocketContext>, Option<Value>, SocketRef<A>) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = Result<ack::Reply, EventError>> + Send + 'static,
{
    let svc = svc.clone();
    s.on(
        event,
        move |s: SocketRef<A>, io: SocketIo<A>, TryData(payload): TryData<Value>, reply: AckSender<A>| {
            let svc = svc.clone();
            let handle = handle.clone();
            let ns = Namespace::from_path(s.ns()).unwrap_or(Namespace::Drivers);
            let span = tracing::info_span!(
                "socketio.event",
                otel.name = event,
                otel.kind = "server",
                socketio.namespace = ns.path(),
                socketio.event = event,
                gateway.outcome = Empty,
            );
            async move {
                let started = Instant::now();
                let budget = s.extensions.get::<Arc<EventBudget>>();
                let outcome = match s.extensions.get::<Arc<SocketContext>>() {
                    _ if budget.is_some_and(|b| !b.take()) => Err(EventError::RateLimited),
                    // Boxed: socketioxide spawns a task per event, and a handler's future is
                    // kilobytes that the spawn would copy three times (callgrind: half of the
                    // instructions per `driver:location` went to those copies).
                    Some(ctx) => Box::pin(handle(svc, io, ctx, payload.ok(), s.clone())).await,
                    None => Err(EventError::Forbidden("not authenticated".into())),
                };
                if let Err(error) = &outcome {
                    tracing::debug!(socket = %s.id, event, code = ?error.code(), %error, "event refused");
                }
                let label = ack::outcome_label(&outcome);
                tracing::Span::current().record("gateway.outcome", label);
                ack::send(reply, outcome).await;
                metrics::event(ns, event, label, started);
            }
            .instrument(span)
        },
    );
}

/// Events no handler of `ns` knows: ignored, counted for operators.
pub fn on_unknown<A: Adapter>(s: &SocketRef<A>, svc: &Arc<Services>, ns: Namespace) {
    let svc = svc.clone();
    s.on_fallback(move |s: SocketRef<A>, Event(event): Event| {
        let svc = svc.clone();
        async move {
            svc.unknown_events.fetch_add(1, Ordering::Relaxed);
            metrics::unknown_event(ns);
            tracing::debug!(socket = %s.id, event, "unknown event ignored");
        }
    });
}
