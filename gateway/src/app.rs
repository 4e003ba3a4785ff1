//! One replica's life: bind the listeners, start Socket.IO (waiting for Redis in cluster mode),
//! serve, and on shutdown drain within the grace period.
//!
//! [`Application::bind`] binds both listeners first (port 0 in tests) so probes answer while
//! dependencies are still coming up; [`Application::run`] takes the shutdown signal as a future.

use crate::{
    realtime::{feed, io::Delivery, notices::RevocationNotices},
    recovery::log::{MemoryLog, RecoveryLog, RedisLog},
    state::keys::RECOVERY_SHARDS,
};
use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Instant,
};

use anyhow::Context;
use axum::{
    Router,
    extract::Request,
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use fred::interfaces::ClientLike;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use tokio::{net::TcpListener, sync::watch};
use tower::{
    Layer as _, Service, ServiceBuilder, ServiceExt, service_fn, util::BoxCloneSyncService,
};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::{
    auth::{handshake::Gatekeeper, jwt::TokenVerifier},
    config::ServeSettings,
    health::Health,
    internal::{self, InternalState, Live},
    listener::{self, Limits},
    origins::Origins,
    realtime::{
        expiry::{self, Deadlines},
        io::Layer,
        presence, revalidate, server,
        services::Services,
        sessions::SessionEvents,
    },
    request_head::detach_from_read_buffer,
    state::{StateEngine, StateSettings, keys::Keys, memory::MemoryState, redis::RedisState},
    store::{postgres::PgStore, redis::RedisClients},
    telemetry::metrics::{self, DisconnectReason},
};

/// Messages buffered per adapter channel before fred's driver drops one: bursts of cluster
/// emits must not be lost silently (the default is 1024).
const ADAPTER_STREAM_BUFFER: usize = 16 * 1024;

pub struct Application {
    settings: ServeSettings,
    public: TcpListener,
    internal: TcpListener,
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
        })
    }

    pub fn public_addr(&self) -> std::io::Result<SocketAddr> {
        self.public.local_addr()
    }

    pub fn internal_addr(&self) -> std::io::Result<SocketAddr> {
        self.internal.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains: not ready, stop accepting, disconnect every
    /// socket (clients reconnect elsewhere), and return within `SHUTDOWN_GRACE_MS`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Self {
            settings,
            public,
            internal,
        } = self;
        let node = settings.node_id.clone();
        tracing::info!(
            node = %node,
            public = %public.local_addr()?,
            internal = %internal.local_addr()?,
            cluster = settings.redis.is_some(),
            "listeners bound"
        );

        // Counters exist from the first request on, and `/metrics` serves them.
        metrics::install();
        let store = PgStore::new(&settings.database).context("cannot set up the database pool")?;
        let health = Arc::new(Health::new(store.clone()));
        let gate = Gatekeeper::new(
            TokenVerifier::new(&settings.jwt),
            store.clone(),
            node.clone(),
        );
        let deadlines = Arc::new(Deadlines::new(settings.lifetime.refresh_lead));
        let live = Arc::new(OnceLock::new());
        let (stop_tx, stop_rx) = watch::channel(false);

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
        let internal_server = listener::serve(
            internal,
            internal::router(InternalState {
                token: settings.internal_api_token.clone(),
                health: health.clone(),
                live: live.clone(),
                cluster: settings.redis.is_some(),
            }),
            Limits {
                name: "internal",
                max_connections: listener::INTERNAL_MAX_CONNECTIONS,
                header_read_timeout: settings.header_read_timeout,
            },
            stop_rx.clone(),
        );
        let socket_app = Arc::new(OnceLock::<SocketService>::new());
        let public_server = listener::serve(
            public,
            public_router(
                health.clone(),
                socket_app.clone(),
                Arc::new(settings.cors_origins.clone()),
            ),
            public_limits,
            stop_rx,
        );

        tokio::pin!(shutdown);
        let io = tokio::select! {
            started = start_socketio(&settings, gate, deadlines.clone(), &health) => {
                let (app, started) = started?;
                tokio::spawn(expiry::sweep(started.delivery.io.clone(), deadlines));
                if let Some(every) = settings.lifetime.revalidate_every {
                    tokio::spawn(revalidate::run(
                        started.delivery.io.clone(),
                        store,
                        started.sessions.clone(),
                        every,
                    ));
                }
                let upkeep = presence::spawn_upkeep(
                    started.delivery.clone(),
                    started.presence.clone(),
                    node.clone(),
                    settings.node_ttl,
                );
                let _ = socket_app.set(app);
                let _ = live.set(started.clone());
                health.set_serving();
                tracing::info!(node = %node, "ready: accepting connections");
                Some((started, upkeep))
            }
            () = &mut shutdown => None,
        };
        if io.is_some() {
            shutdown.await;
        }

        let started = Instant::now();
        health.start_draining();
        let sockets = io
            .as_ref()
            .map_or(0, |(live, _)| live.delivery.io.local_sockets());
        tracing::info!(
            node = %node,
            sockets,
            spread_ms = settings.drain_spread.as_millis() as u64,
            "draining"
        );
        metrics::session_disconnects(DisconnectReason::Drain, sockets as usize);
        let drain = async {
            // Stop accepting first, so disconnected clients reconnect to other replicas.
            let _ = stop_tx.send(true);
            if let Some((live, upkeep)) = &io {
                live.delivery.io.drain(settings.drain_spread).await;
                // No lease renewal after it is given up below.
                upkeep.abort();
                // This replica's drivers start their grace now, not when its lease lapses.
                if let Err(error) = live.state.release_lease().await {
                    tracing::warn!(%error, "lease not released");
                }
            }
            let _ = public_server.await;
            let _ = internal_server.await;
        };
        match tokio::time::timeout(settings.shutdown_grace, drain).await {
            Ok(()) => {
                tracing::info!(node = %node, elapsed_ms = started.elapsed().as_millis() as u64, "drained")
            }
            Err(_) => tracing::warn!(
                node = %node,
                grace_ms = settings.shutdown_grace.as_millis() as u64,
                "drain ran over the grace period; exiting anyway"
            ),
        }
        Ok(())
    }
}

/// Accept queue of the internal listener: backends and probes, not client storms.
const INTERNAL_BACKLOG: u32 = 1024;

/// The Socket.IO service: built once, cloned per request (clones share the Engine.IO sessions;
/// applying the layer again would start an empty session table).
type SocketService = BoxCloneSyncService<Request, Response, Infallible>;

/// `/healthz`, and Socket.IO once it exists (503 until then) for the allowed origins (403).
fn public_router(
    health: Arc<Health>,
    socket_app: Arc<OnceLock<SocketService>>,
    origins: Arc<Origins>,
) -> Router {
    Router::new()
        .route("/healthz", get(internal::healthz).with_state(health))
        .fallback(move |request: Request| {
            let socket_app = socket_app.clone();
            let allowed = origins.allows(request.headers().get(header::ORIGIN));
            async move {
                if !allowed {
                    return internal::ApiError::OriginNotAllowed.into_response();
                }
                match socket_app.get() {
                    Some(app) => match app.clone().oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                    None => internal::ApiError::NotAccepting.into_response(),
                }
            }
        })
}

/// Socket.IO under `/socket.io/`, with CORS for browser clients: the allowed origins, or with
/// `CORS_ORIGINS=*` the guide's `origin: '*', credentials: true` (the origin is mirrored, as `*`
/// cannot carry credentials).
fn socket_service(layer: Layer, origins: &Origins) -> SocketService {
    let allow_origin = match origins {
        Origins::Any => AllowOrigin::mirror_request(),
        Origins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    let not_found = service_fn(|_: Request| async {
        Ok::<_, Infallible>(StatusCode::NOT_FOUND.into_response())
    });
    match layer {
        Layer::Single(layer) => boxed(layer.layer(not_found), allow_origin),
        Layer::Cluster(layer) => boxed(layer.layer(not_found), allow_origin),
    }
}

fn boxed<S, B>(service: S, allow_origin: AllowOrigin) -> SocketService
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let cors = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(AllowHeaders::mirror_request());
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(cors)
            // After CORS, which reads the request's other headers.
            .map_request(detach_from_read_buffer)
            .map_response(|response: axum::http::Response<_>| response.map(axum::body::Body::new))
            .service(service),
    )
}

fn state_settings(settings: &ServeSettings) -> StateSettings {
    StateSettings {
        node_id: settings.node_id.clone(),
        location_rate_per_s: settings.location_rate_per_s,
        presence_grace: settings.presence_grace,
        node_ttl: settings.node_ttl,
        trip_ttl: settings.trip_ttl,
        location_stream_maxlen: settings.location_stream_maxlen,
    }
}

/// Builds the Socket.IO server; in cluster mode waits (retrying) until Redis is reachable.
async fn start_socketio(
    settings: &ServeSettings,
    gate: Gatekeeper,
    deadlines: Arc<Deadlines>,
    health: &Health,
) -> anyhow::Result<(SocketService, Live)> {
    let Some(redis) = &settings.redis else {
        let state: Arc<dyn StateEngine> = Arc::new(MemoryState::new(state_settings(settings)));
        let (recovery, feed) = if settings.recovery.enabled() {
            let (log, feed) = MemoryLog::new(settings.recovery);
            (Some(Arc::new(log) as Arc<dyn RecoveryLog>), Some(feed))
        } else {
            (None, None)
        };
        let services = Arc::new(Services::new(
            gate,
            state.clone(),
            settings.lifetime,
            deadlines,
            recovery.clone(),
        ));
        let presence = services.presence.clone();
        let (layer, io) = server::single(settings, services);
        let notices = Arc::new(RevocationNotices::new(recovery.clone()));
        if let Some(feed) = feed {
            tokio::spawn(feed::run_feed(io.clone(), feed, notices.clone()));
        }
        let sessions = Arc::new(SessionEvents::new(io.clone(), None, notices));
        return Ok((
            socket_service(layer, &settings.cors_origins),
            Live {
                delivery: Delivery { io, log: recovery },
                state,
                sessions,
                presence,
            },
        ));
    };
    let keys = Keys::new(&settings.redis_prefix);
    let clients = RedisClients::new(redis).context("cannot set up the Redis clients")?;
    health.set_redis(clients.clone());
    clients.log_connection_errors();
    tracing::info!("connecting to Redis (retrying until it answers)");
    clients
        .commands
        .init()
        .await
        .context("cannot connect to Redis")?;
    let adapter = RedisAdapterCtr::new_with_fred_config(
        clients.adapter.clone(),
        RedisAdapterConfig::new()
            .with_prefix(keys.adapter())
            .with_stream_buffer(ADAPTER_STREAM_BUFFER),
    )
    .await
    .context("cannot connect the adapter to Redis")?;
    clients.restore_subscriptions_on_reconnect();
    let state: Arc<dyn StateEngine> = Arc::new(RedisState::new(
        clients.commands.clone(),
        &settings.redis_prefix,
        state_settings(settings),
    ));
    // A previous run under this NODE_ID may have left drivers behind: their grace starts now.
    state
        .release_lease()
        .await
        .context("cannot reach the cluster state")?;
    let recovery = settings.recovery.enabled().then(|| {
        Arc::new(RedisLog::new(
            clients.commands.clone(),
            keys.clone(),
            settings.recovery,
        )) as Arc<dyn RecoveryLog>
    });
    let services = Arc::new(Services::new(
        gate,
        state.clone(),
        settings.lifetime,
        deadlines,
        recovery.clone(),
    ));
    let presence = services.presence.clone();
    let (layer, io) = server::cluster(settings, services, adapter).await?;
    let notices = Arc::new(RevocationNotices::new(recovery.clone()));
    if recovery.is_some() {
        clients
            .recovery
            .init()
            .await
            .context("cannot connect the recovery listener")?;
        let channels = (0..RECOVERY_SHARDS)
            .map(|s| keys.recovery_channel(s))
            .collect();
        feed::listen(
            clients.recovery.clone(),
            channels,
            io.clone(),
            notices.clone(),
        )
        .await
        .context("cannot subscribe to the recovery channels")?;
    }
    clients
        .auth_events
        .init()
        .await
        .context("cannot connect the auth-events listener")?;
    let channel = keys.auth_events();
    let sessions = Arc::new(SessionEvents::new(
        io.clone(),
        Some((clients.commands.clone(), channel.clone())),
        notices,
    ));
    sessions
        .clone()
        .listen(clients.auth_events.clone(), channel)
        .await
        .context("cannot subscribe to the auth-events channel")?;
    Ok((
        socket_service(layer, &settings.cors_origins),
        Live {
            delivery: Delivery { io, log: recovery },
            state,
            sessions,
            presence,
        },
    ))
}
