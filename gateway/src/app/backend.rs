//! The mode's backend, built once before anything is wired: a single replica keeps its state and
//! recovery log in memory; a cluster replica keeps them in Redis and hears the other replicas
//! through it (the adapter, the auth events, the recovery channels). [`super::start`] then wires
//! Socket.IO the same way on either.

use std::sync::Arc;

use anyhow::Context;
use fred::interfaces::ClientLike;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr, drivers::fred::FredDriver};
use tokio::sync::mpsc;

use crate::{
    config::{RedisSettings, ServeSettings},
    health::Health,
    realtime::{
        feed,
        io::{Io, Layer},
        notices::RevocationNotices,
        offers::{OfferNotice, Offers},
        resync::Resync,
        server,
        services::Services,
        sessions::SessionEvents,
    },
    recovery::{
        Entry,
        log::{MemoryLog, RecoveryLog, RedisLog},
    },
    state::{
        StateEngine, StateSettings,
        keys::{DRIVER_SHARDS, Keys, RECOVERY_SHARDS},
        memory::MemoryState,
        redis::RedisState,
    },
    store::redis::{RedisClients, listen_shards},
    tasks::Tasks,
};

/// Messages buffered per adapter channel before fred's driver drops one: bursts of cluster
/// emits must not be lost silently (the default is 1024).
const ADAPTER_STREAM_BUFFER: usize = 16 * 1024;

/// Where a replica keeps its state and hears the others.
pub struct Backend {
    pub state: Arc<dyn StateEngine>,
    /// `None` when recovery is off (`RECOVERY_WINDOW_MS=0`).
    pub recovery: Option<Arc<dyn RecoveryLog>>,
    mode: Mode,
}

// One per replica, built once: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Mode {
    /// One replica: the memory log's feed of kept entries, until the feed is started.
    Single {
        feed: Option<mpsc::UnboundedReceiver<Entry>>,
    },
    /// A cluster replica: its Redis connections; the adapter until Socket.IO is built.
    Cluster {
        clients: RedisClients,
        keys: Keys,
        adapter: Option<RedisAdapterCtr<FredDriver>>,
    },
}

impl Backend {
    /// The backend `settings` ask for; in cluster mode waits (retrying) until Redis answers.
    pub async fn connect(
        settings: &ServeSettings,
        health: &Health,
        tasks: &Tasks,
    ) -> anyhow::Result<Self> {
        match &settings.redis {
            None => Ok(Self::memory(settings)),
            Some(redis) => Self::redis(settings, redis, health, tasks).await,
        }
    }

    fn memory(settings: &ServeSettings) -> Self {
        let (recovery, feed) = if settings.recovery.enabled() {
            let (log, feed) = MemoryLog::new(settings.recovery);
            (Some(Arc::new(log) as Arc<dyn RecoveryLog>), Some(feed))
        } else {
            (None, None)
        };
        Self {
            state: Arc::new(MemoryState::new(state_settings(settings))),
            recovery,
            mode: Mode::Single { feed },
        }
    }

    async fn redis(
        settings: &ServeSettings,
        redis: &RedisSettings,
        health: &Health,
        tasks: &Tasks,
    ) -> anyhow::Result<Self> {
        let keys = Keys::new(&settings.redis_prefix);
        let clients = RedisClients::new(redis).context("cannot set up the Redis clients")?;
        let [adapter, auth_events, commands, recovery, offers] = clients.names();
        tracing::info!(
            adapter,
            auth_events,
            commands,
            recovery,
            offers,
            "redis connections named (CLIENT LIST)"
        );
        health.set_redis(clients.clone());
        clients.log_connection_errors(tasks);
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
        clients.restore_subscriptions_on_reconnect(tasks);
        let state: Arc<dyn StateEngine> = Arc::new(RedisState::new(
            clients.commands.clone(),
            &settings.redis_prefix,
            state_settings(settings),
            tasks,
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
        Ok(Self {
            state,
            recovery,
            mode: Mode::Cluster {
                clients,
                keys,
                adapter: Some(adapter),
            },
        })
    }

    /// This replica's Socket.IO server on this backend.
    pub async fn socketio(
        &mut self,
        settings: &ServeSettings,
        services: Arc<Services>,
    ) -> anyhow::Result<(Layer, Io)> {
        match &mut self.mode {
            Mode::Single { .. } => Ok(server::single(settings, services)),
            Mode::Cluster { adapter, .. } => {
                let adapter = adapter.take().context("Socket.IO is built once")?;
                server::cluster(settings, services, adapter).await
            }
        }
    }

    /// Starts handing kept entries to this replica's sockets: the memory log's feed, or the
    /// recovery channels every replica publishes on.
    pub async fn feed(
        &mut self,
        io: &Io,
        notices: &Arc<RevocationNotices>,
        offers: &Arc<Offers>,
        tasks: &Tasks,
    ) -> anyhow::Result<()> {
        match &mut self.mode {
            Mode::Single { feed } => {
                if let Some(feed) = feed.take() {
                    tasks.spawn(
                        "recovery feed",
                        feed::run_feed(io.clone(), feed, notices.clone()),
                    );
                }
            }
            Mode::Cluster { clients, keys, .. } => {
                let Some(log) = &self.recovery else {
                    return Ok(());
                };
                clients
                    .recovery
                    .init()
                    .await
                    .context("cannot connect the recovery listener")?;
                let channels = feed::Channels {
                    listener: clients.recovery.clone(),
                    publisher: clients.commands.clone(),
                    names: (0..RECOVERY_SHARDS)
                        .map(|s| keys.recovery_channel(s))
                        .collect(),
                };
                let resync = Resync::new(io.clone(), log.clone(), offers.clone());
                feed::listen(
                    channels,
                    io.clone(),
                    notices.clone(),
                    Arc::new(resync),
                    tasks,
                )
                .await
                .context("cannot subscribe to the recovery channels")?;
            }
        }
        Ok(())
    }

    /// The auth events, applied here; in cluster mode published to, and heard from, every
    /// replica through the auth-events channel.
    pub async fn sessions(
        &self,
        io: &Io,
        notices: Arc<RevocationNotices>,
        tasks: &Tasks,
    ) -> anyhow::Result<Arc<SessionEvents>> {
        let Mode::Cluster { clients, keys, .. } = &self.mode else {
            return Ok(Arc::new(SessionEvents::new(io.clone(), None, notices)));
        };
        clients
            .auth_events
            .init()
            .await
            .context("cannot connect the auth-events listener")?;
        let channel = keys.auth_events();
        let publisher = Some((clients.commands.clone(), channel.clone()));
        let sessions = Arc::new(SessionEvents::new(io.clone(), publisher, notices));
        sessions
            .clone()
            .listen(clients.auth_events.clone(), channel, tasks)
            .await
            .context("cannot subscribe to the auth-events channel")?;
        Ok(sessions)
    }

    /// In cluster mode, hears which offers were answered on any replica, for the dispatches
    /// waiting on this one (on a single replica the answer is recorded where it waits).
    pub async fn offers(&self, offers: &Arc<Offers>, tasks: &Tasks) -> anyhow::Result<()> {
        let Mode::Cluster { clients, keys, .. } = &self.mode else {
            return Ok(());
        };
        let client = clients.offers.clone();
        client
            .init()
            .await
            .context("cannot connect the offers listener")?;
        let channels = (0..DRIVER_SHARDS)
            .map(|shard| keys.offers_channel(shard))
            .collect();
        let offers = offers.clone();
        let resolve = move |notice: OfferNotice| offers.resolve(notice);
        // A dispatch whose notice was lost closes its offer at expiry and finds the recorded
        // answer then.
        let lagged = |lost| tracing::warn!(lost, "offer notices lost: listener lagged");
        listen_shards(&client, channels, tasks, "offers listener", resolve, lagged)
            .await
            .context("cannot subscribe to the offers channels")?;
        Ok(())
    }

    /// The Redis connections, closed last in the drain; `None` on a single replica.
    pub fn redis_clients(&self) -> Option<RedisClients> {
        match &self.mode {
            Mode::Cluster { clients, .. } => Some(clients.clone()),
            Mode::Single { .. } => None,
        }
    }
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
