//! One replica's life, and the one composition root: bind the listeners, build the mode's
//! backend ([`backend`]: memory, or Redis, waiting for it), wire Socket.IO on it once, start the
//! background work, serve, and on shutdown drain within the grace period.
//!
//! [`Application::bind`] binds both listeners first (port 0 in tests) so probes answer while
//! dependencies are still coming up; [`Application::run`] takes the shutdown signal as a future.
//! Every background task is owned by the replica's [`Tasks`], which the drain stops and awaits.
//! [`http`] is the public listener's router.

mod backend;
mod http;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Instant,
};

use anyhow::Context;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{
    auth::{handshake::Gatekeeper, jwt::TokenVerifier},
    config::ServeSettings,
    health::Health,
    internal::{self, InternalState, Live},
    listener::{self, Limits},
    realtime::{
        expiry::{self, Deadlines},
        io::Delivery,
        notices::RevocationNotices,
        offers::Offers,
        presence, revalidate,
        services::Services,
    },
    recovery::pid::PidKey,
    store::{postgres::PgStore, redis::RedisClients},
    tasks::Tasks,
    telemetry::metrics::{self, DisconnectReason},
};
use backend::Backend;
use http::SocketService;

pub struct Application {
    settings: ServeSettings,
    public: TcpListener,
    internal: TcpListener,
    tasks: Tasks,
}

/// What a started replica serves with, and what its drain closes.
struct Started {
    live: Live,
    /// Closed last; `None` on a single replica.
    redis: Option<RedisClients>,
}

impl Application {
    /// Binds both listeners; nothing else is started.
    pub async fn bind(settings: ServeSettings) -> anyhow::Result<Self> {
        let public = listener::listen(settings.bind_addr, settings.listen_backlog)
            .with_context(|| format!("cannot bind BIND_ADDR {}", settings.bind_addr))?;
        let internal = listener::listen(settings.internal_bind_addr, INTERNAL_BACKLOG)
            .with_context(|| {
                format!(
                    "cannot bind INTERNAL_BIND_ADDR {}",
                    settings.internal_bind_addr
                )
            })?;
        Ok(Self {
            settings,
            public,
            internal,
            tasks: Tasks::new(),
        })
    }

    pub fn public_addr(&self) -> std::io::Result<SocketAddr> {
        self.public.local_addr()
    }

    pub fn internal_addr(&self) -> std::io::Result<SocketAddr> {
        self.internal.local_addr()
    }

    /// The replica's background tasks: none is left running once [`Application::run`] returns.
    pub fn tasks(&self) -> Tasks {
        self.tasks.clone()
    }

    /// Serves until `shutdown` resolves, then drains: not ready, stop accepting, disconnect every
    /// socket (clients reconnect elsewhere), stop the background work, and return within
    /// `SHUTDOWN_GRACE_MS`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Self {
            settings,
            public,
            internal,
            tasks,
        } = self;
        tracing::info!(
            node = %settings.node_id,
            public = %public.local_addr()?,
            internal = %internal.local_addr()?,
            cluster = settings.redis.is_some(),
            "listeners bound"
        );
        // Counters exist from the first request on, and `/metrics` serves them.
        metrics::install();
        let store = PgStore::new(&settings.database).context("cannot set up the database pool")?;
        let health = Arc::new(Health::new(store.clone()));
        let live = Arc::new(OnceLock::new());
        let socket_app = Arc::new(OnceLock::<SocketService>::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let servers = serve(
            &settings,
            public,
            internal,
            &health,
            &live,
            &socket_app,
            stop_rx,
        );

        tokio::pin!(shutdown);
        let started = tokio::select! {
            started = start(&settings, store, &health, &tasks) => {
                let (app, started) = started?;
                let _ = socket_app.set(app);
                let _ = live.set(started.live.clone());
                health.set_serving();
                tracing::info!(node = %settings.node_id, "ready: accepting connections");
                Some(started)
            }
            () = &mut shutdown => None,
        };
        if started.is_some() {
            shutdown.await;
        }
        drain(&settings, &health, started, stop_tx, servers, &tasks).await;
        Ok(())
    }
}

/// Accept queue of the internal listener: backends and probes, not client storms.
const INTERNAL_BACKLOG: u32 = 1024;

/// Starts both listeners: the internal API (503 until the replica has started) and the public
/// one (Socket.IO once it exists).
fn serve(
    settings: &ServeSettings,
    public: TcpListener,
    internal: TcpListener,
    health: &Arc<Health>,
    live: &Arc<OnceLock<Live>>,
    socket_app: &Arc<OnceLock<SocketService>>,
    stop: watch::Receiver<bool>,
) -> [JoinHandle<()>; 2] {
    let public_limits = Limits {
        name: "public",
        max_connections: settings
            .max_connections
            .unwrap_or_else(listener::default_max_connections),
        header_read_timeout: settings.header_read_timeout,
    };
    tracing::info!(
        max_connections = public_limits.max_connections,
        header_read_timeout_ms = settings.header_read_timeout.as_millis() as u64,
        "public listener limits"
    );
    let internal_api = internal::router(InternalState {
        token: settings.internal_api_token.clone(),
        health: health.clone(),
        live: live.clone(),
        cluster: settings.redis.is_some(),
    });
    let internal_limits = Limits {
        name: "internal",
        max_connections: listener::INTERNAL_MAX_CONNECTIONS,
        header_read_timeout: settings.header_read_timeout,
    };
    let public_router = http::public_router(
        health.clone(),
        socket_app.clone(),
        Arc::new(settings.cors_origins.clone()),
    );
    [
        listener::serve(internal, internal_api, internal_limits, stop.clone()),
        listener::serve(public, public_router, public_limits, stop),
    ]
}

/// Builds the mode's backend, then wires Socket.IO on it, the same way for both modes, and
/// starts the background work.
async fn start(
    settings: &ServeSettings,
    store: PgStore,
    health: &Health,
    tasks: &Tasks,
) -> anyhow::Result<(SocketService, Started)> {
    let gate = Gatekeeper::new(
        TokenVerifier::new(&settings.jwt),
        store.clone(),
        settings.node_id.clone(),
    );
    let deadlines = Arc::new(Deadlines::new(settings.lifetime.refresh_lead));
    let mut backend = Backend::connect(settings, health, tasks).await?;
    let offers = Arc::new(Offers::new(backend.state.clone()));
    let services = Arc::new(Services::new(
        gate,
        backend.state.clone(),
        settings.lifetime,
        deadlines.clone(),
        backend.recovery.clone(),
        offers.clone(),
        PidKey::derive(settings.internal_api_token.expose()),
    ));
    let presence = services.presence.clone();
    let (layer, io) = backend.socketio(settings, services).await?;
    let notices = Arc::new(RevocationNotices::new(backend.recovery.clone()));
    backend.feed(&io, &notices, &offers, tasks).await?;
    let sessions = backend.sessions(&io, notices, tasks).await?;
    backend.offers(&offers, tasks).await?;
    let live = Live {
        delivery: Delivery {
            io,
            log: backend.recovery.clone(),
        },
        state: backend.state.clone(),
        sessions,
        presence,
        offers,
    };
    background(settings, &live, deadlines, store, tasks);
    let app = http::socket_service(layer, &settings.cors_origins);
    let redis = backend.redis_clients();
    Ok((app, Started { live, redis }))
}

/// The replica's own background work: the expiry sweep, re-validation, and presence upkeep.
fn background(
    settings: &ServeSettings,
    live: &Live,
    deadlines: Arc<Deadlines>,
    store: PgStore,
    tasks: &Tasks,
) {
    let io = live.delivery.io.clone();
    tasks.spawn("expiry sweep", expiry::sweep(io.clone(), deadlines));
    if let Some(every) = settings.lifetime.revalidate_every {
        let sessions = live.sessions.clone();
        tasks.spawn(
            "session re-validation",
            revalidate::run(io, store, sessions, every),
        );
    }
    tasks.spawn(
        "presence upkeep",
        presence::upkeep(
            live.delivery.clone(),
            live.presence.clone(),
            settings.node_id.clone(),
            settings.node_ttl,
        ),
    );
}

/// Not ready; stop accepting, so disconnected clients reconnect to other replicas; close the
/// sockets over the spread; stop the background work; give up the lease; let the listeners
/// finish; close the Redis connections. Within `SHUTDOWN_GRACE_MS`.
async fn drain(
    settings: &ServeSettings,
    health: &Health,
    started: Option<Started>,
    stop: watch::Sender<bool>,
    servers: [JoinHandle<()>; 2],
    tasks: &Tasks,
) {
    let node = &settings.node_id;
    let began = Instant::now();
    health.start_draining();
    let sockets = started
        .as_ref()
        .map_or(0, |s| s.live.delivery.io.local_sockets());
    tracing::info!(
        node = %node,
        sockets,
        spread_ms = settings.drain_spread.as_millis() as u64,
        "draining"
    );
    metrics::session_disconnects(DisconnectReason::Drain, sockets as usize);
    let drain = async {
        let _ = stop.send(true);
        if let Some(started) = &started {
            started.live.delivery.io.drain(settings.drain_spread).await;
        }
        // No lease renewal (nor anything else of this replica) after it is given up below.
        tasks.stop().await;
        if let Some(started) = &started {
            // This replica's drivers start their grace now, not when its lease lapses.
            if let Err(error) = started.live.state.release_lease().await {
                tracing::warn!(%error, "lease not released");
            }
        }
        for server in servers {
            let _ = server.await;
        }
        if let Some(redis) = started.as_ref().and_then(|s| s.redis.as_ref()) {
            redis.quit().await;
        }
    };
    match tokio::time::timeout(settings.shutdown_grace, drain).await {
        Ok(()) => {
            tracing::info!(node = %node, elapsed_ms = began.elapsed().as_millis() as u64, "drained")
        }
        Err(_) => tracing::warn!(
            node = %node,
            grace_ms = settings.shutdown_grace.as_millis() as u64,
            "drain ran over the grace period; exiting anyway"
        ),
    }
}
