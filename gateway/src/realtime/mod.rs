//! The Socket.IO side: namespaces, the handshake middleware, rooms, client events, and the
//! cluster adapter.
//!
//! Handlers are generic over the adapter, so one body of code serves a single replica (in-memory
//! adapter) and the cluster (Redis adapter over fred). [`Io`] is the one place that tells the two
//! apart for the rest of the gateway, through [`on_io!`].

/// Runs `$body` with `$io` bound to the `SocketIo` of either mode: the one place the two are
/// matched.
macro_rules! on_io {
    ($value:expr, $io:ident => $body:expr) => {
        match $value {
            $crate::realtime::Io::Single($io) => $body,
            $crate::realtime::Io::Cluster($io) => $body,
        }
    };
}

pub mod ack;
pub mod admin;
pub mod context;
pub mod deliver;
pub mod drivers;
pub mod expiry;
pub mod feed;
pub mod limits;
pub mod presence;
pub mod refresh;
pub mod revalidate;
pub mod sessions;
pub mod throttle;
pub mod validate;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use shared::{
    events::{
        ADMIN_DISCONNECT_SESSION, ADMIN_DRIVER_STATE, ADMIN_DRIVERS_NEARBY, ADMIN_STATS,
        AUTH_REFRESH, DRIVER_LOCATION, DRIVER_STATUS, HELLO, Hello,
    },
    namespace::Namespace,
    rooms,
};
use socketioxide::{
    SocketIo, SocketIoBuilder,
    adapter::{Adapter, Emitter, LocalAdapter},
    extract::{AckSender, Event, SocketRef, TryData},
    handler::ConnectHandler,
    layer::SocketIoLayer,
    socket::DisconnectReason,
};
use socketioxide_core::adapter::DefinedAdapter;
use socketioxide_redis::{FredAdapter, RedisAdapterCtr, drivers::fred::FredDriver};
use tokio::sync::Semaphore;
use tracing::{Instrument, Span, field::Empty};

use crate::{
    auth::handshake::{Gatekeeper, HandshakeError, token_from},
    config::{LifetimeSettings, ServeSettings},
    recovery::{
        Offset,
        log::RecoveryLog,
        resume::{self, ClientOffset},
    },
    state::StateEngine,
    telemetry::metrics,
};
use ack::EventError;
use context::{SocketContext, SocketData};
use expiry::Deadlines;
use presence::LocalPresence;
use throttle::{AdminLocationThrottle, EventBudget};

/// The adapter of cluster mode.
pub type ClusterAdapter = FredAdapter<Emitter>;

/// What the socket handlers share.
pub struct Services {
    pub gate: Gatekeeper,
    pub state: Arc<dyn StateEngine>,
    /// Expiry, re-validation and per-user limits.
    pub lifetime: LifetimeSettings,
    /// Every socket's next expiry deadline.
    pub deadlines: Arc<Deadlines>,
    pub presence: Arc<LocalPresence>,
    pub admin_throttle: AdminLocationThrottle,
    /// Events no handler knows, ignored; counted for operators.
    pub unknown_events: AtomicU64,
    /// One permit per handshake in progress (`MAX_PENDING_HANDSHAKES`).
    pub pending_handshakes: Semaphore,
    /// Missed-event recovery; `None` when it is off (`RECOVERY_WINDOW_MS=0`).
    pub recovery: Option<Arc<dyn RecoveryLog>>,
}

impl Services {
    pub fn new(
        gate: Gatekeeper,
        state: Arc<dyn StateEngine>,
        lifetime: LifetimeSettings,
        deadlines: Arc<Deadlines>,
        recovery: Option<Arc<dyn RecoveryLog>>,
    ) -> Self {
        Self {
            gate,
            lifetime,
            deadlines,
            presence: Arc::new(LocalPresence::new(state.clone())),
            state,
            admin_throttle: AdminLocationThrottle::default(),
            unknown_events: AtomicU64::new(0),
            pending_handshakes: Semaphore::new(lifetime.max_pending_handshakes),
            recovery,
        }
    }
}

/// This replica's Socket.IO server, in either mode.
#[derive(Clone)]
pub enum Io {
    Single(SocketIo<LocalAdapter>),
    Cluster(SocketIo<ClusterAdapter>),
}

/// The Tower layer serving `/socket.io/`, in either mode.
pub enum Layer {
    Single(SocketIoLayer<LocalAdapter>),
    Cluster(SocketIoLayer<ClusterAdapter>),
}

impl Io {
    /// A single replica: in-memory adapter, namespaces ready at once.
    pub fn single(settings: &ServeSettings, svc: Arc<Services>) -> (Layer, Io) {
        let (layer, io) = engine(settings).build_layer();
        for ns in Namespace::ALL {
            io.ns(ns.path(), handler::<LocalAdapter>(ns, svc.clone()));
        }
        (Layer::Single(layer), Io::Single(io))
    }

    /// A cluster replica: each namespace exists once its adapter channels are subscribed.
    pub async fn cluster(
        settings: &ServeSettings,
        svc: Arc<Services>,
        adapter: RedisAdapterCtr<FredDriver>,
    ) -> anyhow::Result<(Layer, Io)> {
        let (layer, io) = engine(settings)
            .with_adapter::<ClusterAdapter>(adapter)
            .build_layer();
        for ns in Namespace::ALL {
            io.ns(ns.path(), handler::<ClusterAdapter>(ns, svc.clone()))
                .await
                .map_err(|e| anyhow::anyhow!("cannot subscribe namespace {ns}: {e}"))?;
        }
        Ok((Layer::Cluster(layer), Io::Cluster(io)))
    }

    /// Disconnects every socket of this replica, with a reason clients reconnect from (drain).
    pub async fn close(&self) {
        on_io!(self, io => io.close().await)
    }

    /// Closes this replica's connections over `spread` (SIGTERM drain): a share every tick, each
    /// with a reason clients reconnect from, so they arrive at the other replicas (and at
    /// PostgreSQL) over the window instead of all at once. Then closes whatever is left.
    pub async fn drain(&self, spread: Duration) {
        // Evenly: tick t closes sockets [t·n/ticks, (t+1)·n/ticks), so the last ones go in the
        // window's last tick, however few there are.
        async fn spread_out<A: Adapter>(io: &SocketIo<A>, spread: Duration) {
            let sockets: Vec<SocketRef<A>> = Namespace::ALL
                .into_iter()
                .filter_map(|ns| io.of(ns.path()))
                .flat_map(|op| op.local().sockets())
                .collect();
            let n = sockets.len();
            if n == 0 {
                return;
            }
            let ticks = (spread.as_millis() / DRAIN_TICK.as_millis()).max(1) as usize;
            let mut every = tokio::time::interval(DRAIN_TICK);
            for tick in 0..ticks {
                every.tick().await;
                for socket in &sockets[tick * n / ticks..(tick + 1) * n / ticks] {
                    socket.close_transport();
                }
            }
        }
        on_io!(self, io => spread_out(io, spread).await);
        self.close().await;
    }

    /// Sockets connected to this replica: (drivers, passengers, admin).
    pub fn local_counts(&self) -> (u64, u64, u64) {
        fn count<A: Adapter>(io: &SocketIo<A>, ns: Namespace) -> u64 {
            io.of(ns.path())
                .map_or(0, |op| op.local().sockets().len() as u64)
        }
        fn all<A: Adapter>(io: &SocketIo<A>) -> (u64, u64, u64) {
            (
                count(io, Namespace::Drivers),
                count(io, Namespace::Passengers),
                count(io, Namespace::Admin),
            )
        }
        on_io!(self, io => all(io))
    }

    pub fn local_sockets(&self) -> u64 {
        let (d, p, a) = self.local_counts();
        d + p + a
    }
}

/// Engine.IO settings shared by both modes.
fn engine(settings: &ServeSettings) -> SocketIoBuilder<LocalAdapter> {
    let max = usize::try_from(settings.max_payload_bytes).unwrap_or(usize::MAX);
    SocketIo::builder()
        .ping_interval(settings.ping_interval)
        .ping_timeout(settings.ping_timeout)
        .max_payload(settings.max_payload_bytes)
        // Without these a websocket frame could be 64 MB whatever MAX_PAYLOAD_BYTES says.
        .ws_max_message_size(max)
        .ws_max_frame_size(max)
        // Memory per idle connection (docs/benchmarks.md): a smaller initial WebSocket read
        // buffer; it grows for larger messages.
        .ws_read_buffer_size(WS_READ_BUFFER_BYTES)
        .max_buffer_size(SEND_BUFFER_PACKETS)
}

/// Packets queued per socket before an emit to it fails (socketioxide's default is 128). A
/// polling client takes the whole queue at its next poll, so a burst of pushes to one passenger
/// (300 at once were refused at 128) must fit; the queue allocates as it fills, so an idle
/// socket pays nothing for the size.
const SEND_BUFFER_PACKETS: usize = 1024;

/// How often the drain closes its next share of connections.
const DRAIN_TICK: Duration = Duration::from_millis(100);

/// Initial WebSocket read buffer per connection (socketioxide's default is 4096).
const WS_READ_BUFFER_BYTES: usize = 256;

/// The connect handler of `ns`, behind the handshake middleware.
fn handler<A>(
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
    let _entered = span.enter();
    match admitted {
        Ok(identity) => {
            span.record("gateway.outcome", "ok");
            span.record("enduser.id", identity.user_id.to_string());
            s.extensions.insert(HandshakeStarted {
                at: started,
                span: span.clone(),
            });
            s.extensions
                .insert(Arc::new(SocketContext::new(ns, identity)));
            if let Some(offset) = ClientOffset::from_auth(auth.as_ref()) {
                s.extensions.insert(offset);
            }
            Ok(())
        }
        Err(error) => {
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
            Err(error)
        }
    }
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
    // The gate first: a recoverable event for this user may arrive as soon as it joins.
    let user_room = resume::user_room(ns, ctx.user_id());
    let resume_from = resume::admit(&s, svc.recovery.is_some() && user_room.is_some());
    s.join(ctx.rooms());
    if svc.lifetime.max_sockets_per_user > 0 {
        // So that a replica where the user opens one socket too many can reach this one.
        s.join(rooms::socket(&s.id.to_string()));
    }
    s.extensions.insert(Arc::new(EventBudget::default()));
    on_event(
        &s,
        &svc,
        AUTH_REFRESH,
        move |svc, _, ctx, payload, s| async move { refresh::refresh(&svc, &s, ns, ctx, payload).await },
    );
    match ns {
        Namespace::Drivers => {
            on_event(
                &s,
                &svc,
                DRIVER_STATUS,
                |svc, io, ctx, payload, _| async move {
                    drivers::status(&svc, &io, ctx.user_id(), payload).await
                },
            );
            on_event(
                &s,
                &svc,
                DRIVER_LOCATION,
                |svc, io, ctx, payload, _| async move {
                    drivers::location(&svc, &io, ctx.user_id(), payload).await
                },
            );
            svc.presence.opened(ctx.user_id()).await;
        }
        Namespace::Admin => {
            on_event(&s, &svc, ADMIN_STATS, |svc, _, _, _, _| async move {
                admin::stats(&svc).await
            });
            on_event(
                &s,
                &svc,
                ADMIN_DRIVERS_NEARBY,
                |svc, _, _, payload, _| async move { admin::drivers_nearby(&svc, payload).await },
            );
            on_event(
                &s,
                &svc,
                ADMIN_DRIVER_STATE,
                |svc, _, _, payload, _| async move { admin::driver_state(&svc, payload).await },
            );
            on_event(
                &s,
                &svc,
                ADMIN_DISCONNECT_SESSION,
                |_, io, ctx, payload, _| async move {
                    match &ctx.data {
                        SocketData::Admin(data) => {
                            admin::disconnect_session(&io, data, payload).await
                        }
                        _ => Err(EventError::Forbidden("admins only".into())),
                    }
                },
            );
        }
        Namespace::Passengers => {}
    }
    let unknown_svc = svc.clone();
    s.on_fallback(move |s: SocketRef<A>, Event(event): Event| {
        let svc = unknown_svc.clone();
        async move {
            svc.unknown_events.fetch_add(1, Ordering::Relaxed);
            metrics::unknown_event(ns);
            tracing::debug!(socket = %s.id, event, "unknown event ignored");
        }
    });
    // What the client missed, before hello (recovery.md).
    let greet = |recovered: Option<bool>, offset: Option<Offset>| {
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
    match (resume_from, &svc.recovery, &user_room) {
        (Some(from), Some(log), Some(room)) => {
            resume::replay(&s, &**log, room, from, |recovered, offset| {
                greet(Some(recovered), offset)
            })
            .await
        }
        _ => greet(None, None),
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
    // Cleanup (presence, limits, deadline) runs once, from whichever comes second: the
    // disconnect handler, or this check. socketioxide calls a disconnect handler only if it was
    // registered before the socket closed, and a client may leave during the awaits above (a
    // driver gone then stayed "connected" forever).
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

/// Wires `event` to `handle`, with the flood budget, validation of the socket's context, and the
/// acknowledgement of the outcome (also for events sent without a callback: processed the same).
/// Each event is one span and is counted once its ack is sent.
fn on_event<A, F, Fut>(s: &SocketRef<A>, svc: &Arc<Services>, event: &'static str, handle: F)
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
