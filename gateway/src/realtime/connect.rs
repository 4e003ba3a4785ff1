//! A socket's life on this replica, the same for every namespace: the handshake (middleware),
//! then on connect its rooms, its namespace's events (wired by the namespace's own file), what it
//! missed, `hello`, its registration; and the cleanup when it goes.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use serde_json::Value;
use shared::{
    events::{HELLO, Hello},
    namespace::Namespace,
    rooms,
};
use socketioxide::{
    ConnectionPid, SocketIo,
    adapter::Adapter,
    extract::{SocketRef, TryData},
    handler::ConnectHandler,
    socket::DisconnectReason,
};
use socketioxide_core::adapter::DefinedAdapter;
use tracing::{Instrument, Span, field::Empty};

use super::{
    admin,
    context::SocketContext,
    drivers,
    events::on_unknown,
    expiry, limits, refresh,
    resync::{self, GapReason},
    services::Services,
    throttle::EventBudget,
};
use crate::{
    auth::handshake::{HandshakeError, token_from},
    recovery::{
        Offset,
        resume::{self, ClientOffset},
    },
    telemetry::metrics,
};

/// The connect handler of `ns`, behind the handshake middleware.
pub fn handler<A>(
    ns: Namespace,
    svc: Arc<Services>,
) -> impl ConnectHandler<A, (SocketRef<A>, SocketIo<A>)>
where
    A: Adapter + DefinedAdapter,
{
    let gate_svc = svc.clone();
    let admit = move |s: SocketRef<A>, TryData(auth): TryData<Value>| {
        let svc = gate_svc.clone();
        async move { admit(ns, &s, auth.ok(), &svc).await }
    };
    let connect = move |s: SocketRef<A>, io: SocketIo<A>| {
        let svc = svc.clone();
        async move { on_connect(ns, s, io, svc).await }
    };
    connect.with(admit)
}

/// The handshake (middleware): on success the socket carries its [`SocketContext`]; on failure
/// the client gets `connect_error` with the error's message. Counted and traced here, where the
/// outcome is decided; a successful handshake is counted once `hello` is sent.
async fn admit<A: Adapter>(
    ns: Namespace,
    s: &SocketRef<A>,
    auth: Option<Value>,
    svc: &Services,
) -> Result<(), HandshakeError> {
    let gate = &svc.gate;
    let started = Instant::now();
    let span = tracing::info_span!(
        "socketio.handshake",
        otel.kind = "server",
        socketio.namespace = ns.path(),
        gateway.node = gate.node(),
        gateway.outcome = Empty,
        enduser.id = Empty,
    );
    let admitted = async {
        let _pending = svc
            .pending_handshakes
            .try_acquire()
            .map_err(|_| HandshakeError::Overloaded)?;
        let token = token_from(auth.as_ref(), &s.req_parts().headers)
            .ok_or(HandshakeError::MissingToken)?;
        let claims = gate.verify(token)?;
        limits::check_handshake_rate(svc, &claims).await?;
        gate.identify(ns, claims).await
    }
    .instrument(span.clone())
    .await;
    let identity = match admitted {
        Ok(identity) => identity,
        Err(error) => {
            let _entered = span.enter();
            return Err(refused(ns, s, error, started, &span));
        }
    };
    span.record("gateway.outcome", "ok");
    let user = identity.user_id.to_string();
    span.record("enduser.id", user.as_str());
    s.extensions.insert(HandshakeStarted {
        at: started,
        span: span.clone(),
    });
    s.extensions
        .insert(Arc::new(SocketContext::new(ns, identity)));
    prepare_recovery(ns, s, &user, auth.as_ref(), svc)
        .instrument(span)
        .await;
    Ok(())
}

/// Before the CONNECT answer: the socket's gate and its user room (joined now, so that nothing
/// kept from here on misses it), where it starts (what it missed after the offset it asked for,
/// and the room's head: read now, to answer whether it recovered), and the `pid` the answer
/// carries (Socket.IO's connection state recovery: the same the client sent when it recovered,
/// a new one otherwise). A stock client that got no event yet sends its pid without an offset:
/// it resumes from where its pid was made.
async fn prepare_recovery<A: Adapter>(
    ns: Namespace,
    s: &SocketRef<A>,
    user: &str,
    auth: Option<&Value>,
    svc: &Services,
) {
    let room = resume::user_room(ns, user);
    let (Some(log), Some(room)) = (&svc.recovery, room) else {
        resume::give_gate(s, false);
        return;
    };
    let sent_pid = auth
        .and_then(|a| a.get("pid"))
        .and_then(Value::as_str)
        .and_then(|pid| Some((pid, svc.pid_key.check(pid, ns, user)?)));
    let asked = ClientOffset::from_auth(auth).or_else(|| {
        let made_at = sent_pid?.1.made_at?;
        Some(ClientOffset::Given(made_at))
    });
    resume::give_gate(s, true);
    s.join(room.room.clone());
    let replay = resume::read(s, &**log, &room, asked).await;
    let pid = match sent_pid {
        Some((pid, _)) if replay.recovered() => pid.to_owned(),
        _ => svc.pid_key.mint(ns, user, replay.head()),
    };
    s.extensions.insert(ConnectionPid(pid));
    s.extensions.insert(replay);
}

/// A refused handshake: traced, counted and logged at the level its cause deserves.
fn refused<A: Adapter>(
    ns: Namespace,
    s: &SocketRef<A>,
    error: HandshakeError,
    started: Instant,
    span: &Span,
) -> HandshakeError {
    span.record("gateway.outcome", error.label());
    metrics::handshake(ns, error.label(), started);
    limits::refused(s);
    match &error {
        HandshakeError::Unavailable(cause) => {
            tracing::error!(nsp = %ns, socket = %s.id, error = %cause, "handshake failed: dependency down")
        }
        HandshakeError::Overloaded => {
            tracing::debug!(nsp = %ns, socket = %s.id, "handshake shed: too many in progress")
        }
        refused => {
            tracing::info!(nsp = %ns, socket = %s.id, outcome = refused.label(), "handshake refused")
        }
    }
    error
}

/// When the socket's CONNECT arrived, and its span: the handshake is timed and traced until
/// `hello`.
#[derive(Debug, Clone)]
struct HandshakeStarted {
    at: Instant,
    span: Span,
}

/// After a successful handshake, still inside its span: join the contract's rooms, wire the
/// namespace's events, register the socket, say hello. The span ends there.
async fn on_connect<A: Adapter>(
    ns: Namespace,
    s: SocketRef<A>,
    io: SocketIo<A>,
    svc: Arc<Services>,
) {
    let started = s.extensions.remove::<HandshakeStarted>();
    let span = started.as_ref().map_or_else(Span::none, |h| h.span.clone());
    connected(ns, s, io, svc, started.map(|h| h.at))
        .instrument(span)
        .await;
}

async fn connected<A: Adapter>(
    ns: Namespace,
    s: SocketRef<A>,
    io: SocketIo<A>,
    svc: Arc<Services>,
    started: Option<Instant>,
) {
    let Some(ctx) = s.extensions.get::<Arc<SocketContext>>() else {
        // Unreachable: the middleware stores the context before the socket connects.
        tracing::error!(socket = %s.id, "socket without context; disconnecting");
        let _ = s.disconnect();
        return;
    };
    // The gate and the user room came with the handshake (prepare_recovery).
    s.join(ctx.rooms());
    if svc.lifetime.max_sockets_per_user > 0 {
        // So that a replica where the user opens one socket too many can reach this one.
        s.join(rooms::socket(&s.id.to_string()));
    }
    s.extensions.insert(Arc::new(EventBudget::default()));
    refresh::wire(&s, &svc, ns);
    match ns {
        Namespace::Drivers => drivers::wire(&s, &svc, &ctx).await,
        Namespace::Admin => admin::wire(&s, &svc),
        Namespace::Passengers => {}
    }
    on_unknown(&s, &svc, ns);
    // What the client missed, before hello (recovery.md).
    greet(&s, &svc).await;
    if ns == Namespace::Drivers {
        // Offers still open, right after hello: sent before the socket connected, or to a
        // socket of the driver that dropped before answering.
        svc.offers.redeliver(&s, ctx.user_id()).await;
    }
    if let Some(started) = started {
        metrics::handshake(ns, "ok", started);
    }
    expiry::watch(&svc.deadlines, &s, ns, ctx.expires_at_ms);
    limits::register(&svc, &io, ns, ctx.user_id(), &s).await;
    tracing::info!(
        nsp = s.ns(), socket = %s.id, user = ctx.user_id(), sid = ctx.sid(),
        transport = ?s.transport_type(), "socket connected"
    );
    clean_up_once(ns, s, svc).await;
}

/// Replays what the client missed when it asked (and recovery is on), then sends `hello`.
async fn greet<A: Adapter>(s: &SocketRef<A>, svc: &Services) {
    let hello = |recovered: Option<bool>, offset: Option<Offset>| {
        let hello = Hello {
            ok: true,
            nsp: s.ns().to_owned(),
            recovered,
            offset: offset.map(|o| o.to_string()),
        };
        if let Err(error) = s.emit(HELLO, &hello) {
            tracing::warn!(socket = %s.id, %error, "cannot send hello");
        }
    };
    match (s.extensions.remove::<resume::Replay>(), &svc.recovery) {
        (Some(replay), Some(log)) => {
            let replay = replay.catch_up(s, &**log).await;
            let lost = replay.lost();
            resume::finish(s, replay, hello);
            if lost {
                // Kept for it while it connected, and unreadable now: it reconnects and is
                // told it did not recover, rather than miss them silently.
                resync::gap(s, GapReason::Unreadable);
            }
        }
        _ => hello(None, None),
    }
}

/// Cleanup (presence, limits, deadline) runs once, from whichever comes second: the disconnect
/// handler, or the check here. socketioxide calls a disconnect handler only if it was registered
/// before the socket closed, and a client may leave during the connect handler's awaits (a
/// driver gone then stayed "connected" forever).
async fn clean_up_once<A: Adapter>(ns: Namespace, s: SocketRef<A>, svc: Arc<Services>) {
    let cleaned = Arc::new(AtomicBool::new(false));
    let (on_close_svc, on_close_cleaned) = (svc.clone(), cleaned.clone());
    s.on_disconnect(move |s: SocketRef<A>, reason: DisconnectReason| {
        let (svc, cleaned) = (on_close_svc.clone(), on_close_cleaned.clone());
        async move { on_disconnect(ns, s, reason, svc, &cleaned).await }
    });
    if !s.connected() {
        on_disconnect(ns, s, DisconnectReason::TransportClose, svc, &cleaned).await;
    }
}

async fn on_disconnect<A: Adapter>(
    ns: Namespace,
    s: SocketRef<A>,
    reason: DisconnectReason,
    svc: Arc<Services>,
    cleaned: &AtomicBool,
) {
    if cleaned.swap(true, Ordering::SeqCst) {
        return;
    }
    let ctx = s.extensions.get::<Arc<SocketContext>>();
    if let Some(ctx) = ctx.as_deref() {
        svc.deadlines.forget(ns, s.id, ctx.expires_at_ms);
        limits::unregister(&svc, ns, ctx.user_id(), &s).await;
    }
    if let (Namespace::Drivers, Some(ctx)) = (ns, ctx.as_deref()) {
        svc.presence.closed(ctx.user_id()).await;
    }
    tracing::info!(
        nsp = s.ns(), socket = %s.id,
        user = ctx.as_deref().map(SocketContext::user_id).unwrap_or("unknown"),
        sid = ctx.as_deref().map(SocketContext::sid).unwrap_or("unknown"),
        %reason, "socket disconnected"
    );
}
