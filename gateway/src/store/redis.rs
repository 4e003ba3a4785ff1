//! Redis (cluster mode): the fred clients of one replica, on one Redis or a Redis Cluster, kept
//! connected across Redis restarts and failovers.
//!
//! fred has no reconnect policy by default and, after a reconnect, does not restore the
//! adapter's sharded subscriptions by itself (see `docs/spec/socketioxide-notes.md`):
//! [`RedisClients::restore_subscriptions_on_reconnect`] does it, channel by channel.

use std::time::Duration;

use fred::{
    clients::{Client, SubscriberClient},
    interfaces::{ClientLike, EventInterface, PubsubInterface},
    prelude::{Builder, Config, ReconnectPolicy},
    types::RespVersion,
};

use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use crate::{config::RedisSettings, tasks::Tasks};

/// Reconnect forever, backing off from 100 ms to 1 s: a replica must come back by itself, and
/// soon after Redis does. While disconnected every state call is refused at once, so the
/// longest step is how long refusals can outlast an outage or a cluster failover (e2e
/// redis-cluster: with 2 s the last refusal came 1 s after the failover completed).
fn reconnect_policy() -> ReconnectPolicy {
    ReconnectPolicy::new_exponential(0, 100, 1_000, 2)
}

/// Pub/sub messages buffered per client before the slowest reader lags (and loses them).
const PUBSUB_BUFFER: usize = 2048;

/// A command that cannot complete in this time fails instead of hanging a request: a Redis that
/// stops answering (a frozen host keeps its connections open) costs an event at most this long
/// before `UNAVAILABLE`. A healthy Redis answers in well under a millisecond; callers check
/// that the connection is up first, so a Redis that is down fails at once.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// How often a connection error that keeps happening is logged again.
const REPEAT_ERROR_AFTER: Duration = Duration::from_secs(30);

/// The connections one replica holds to Redis.
#[derive(Clone)]
pub struct RedisClients {
    /// Carries the Socket.IO adapter's sharded channels.
    pub adapter: SubscriberClient,
    /// Hears `{prefix}:auth-events`. Separate from `adapter`, whose message pump would log
    /// every message of a channel it does not know.
    pub auth_events: SubscriberClient,
    /// Publishes and answers readiness pings.
    pub commands: Client,
    /// Hears the recoverable events every replica appends (`{prefix}:{rN}:recovery`).
    pub recovery: SubscriberClient,
    /// Hears which offers were answered (`{prefix}:{dN}:offers`), for dispatches waiting here.
    pub offers: SubscriberClient,
}

impl RedisClients {
    /// Builds the clients without connecting.
    pub fn new(settings: &RedisSettings) -> Result<Self, fred::error::Error> {
        let mut config = Config::from_url(settings.url.expose())?;
        // The adapter's fred driver needs RESP3, and fred ignores `?protocol=` in the URL.
        config.version = RespVersion::RESP3;
        // Redis down at start-up keeps the replica not-ready instead of failing it.
        config.fail_fast = false;
        let mut builder = Builder::from_config(config);
        builder
            .set_policy(reconnect_policy())
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                // `CLIENT LIST` then names each connection's client (see `names`).
                c.auto_client_setname = true;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = COMMAND_TIMEOUT;
                // Pub/sub messages wait here before the adapter's pump reads them; at fred's
                // default (32) bursts of cross-replica emits lag and are lost.
                p.broadcast_channel_capacity = PUBSUB_BUFFER;
            });
        Ok(Self {
            adapter: builder.build_subscriber_client()?,
            auth_events: builder.build_subscriber_client()?,
            commands: builder.build()?,
            recovery: builder.build_subscriber_client()?,
            offers: builder.build_subscriber_client()?,
        })
    }

    /// Re-subscribes every sharded channel of the adapter and of the offers after each
    /// reconnect (the recovery feed restores its own, then catches its sockets up:
    /// `realtime::feed`).
    pub fn restore_subscriptions_on_reconnect(&self, tasks: &Tasks) {
        tasks.spawn(
            "restore adapter channels",
            restore_shard_channels(self.adapter.clone(), "adapter"),
        );
        tasks.spawn(
            "restore offers channels",
            restore_shard_channels(self.offers.clone(), "offers"),
        );
    }

    /// Logs why the connection to Redis fails (refused, a certificate not trusted, a password
    /// refused): fred retries silently. A repeat of the same error is logged again after
    /// [`REPEAT_ERROR_AFTER`] at most, not on every retry.
    pub fn log_connection_errors(&self, tasks: &Tasks) {
        let mut errors = self.commands.error_rx();
        tasks.spawn("log redis connection errors", async move {
            let mut last: Option<(String, std::time::Instant)> = None;
            loop {
                let (error, server) = match errors.recv().await {
                    Ok(event) => event,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let text = error.to_string();
                if last
                    .as_ref()
                    .is_some_and(|(seen, at)| *seen == text && at.elapsed() < REPEAT_ERROR_AFTER)
                {
                    continue;
                }
                let server = server.map(|s| s.to_string()).unwrap_or_default();
                tracing::warn!(error = %text, %server, "redis connection failed; retrying");
                last = Some((text, std::time::Instant::now()));
            }
        })
    }

    /// Each client's name, as `CLIENT LIST` shows it on every connection it opens, in the order
    /// adapter, auth-events, commands, recovery, offers: which replica and which role a
    /// connection is (logged at start-up).
    pub fn names(&self) -> [&str; 5] {
        [
            self.adapter.id(),
            self.auth_events.id(),
            self.commands.id(),
            self.recovery.id(),
            self.offers.id(),
        ]
    }

    /// Closes every connection (the drain's last step): nothing of the replica reaches Redis
    /// after it. A connection already down is left to close.
    pub async fn quit(&self) {
        let closed = [
            ("adapter", self.adapter.quit().await),
            ("auth-events", self.auth_events.quit().await),
            ("commands", self.commands.quit().await),
            ("recovery", self.recovery.quit().await),
            ("offers", self.offers.quit().await),
        ];
        for (connection, result) in closed {
            if let Err(error) = result {
                tracing::debug!(%error, connection, "redis connection not closed cleanly");
            }
        }
    }

    /// Whether every connection is up, without a round trip (metrics).
    pub fn connected(&self) -> bool {
        self.adapter.is_connected()
            && self.auth_events.is_connected()
            && self.commands.is_connected()
    }

    /// Whether every connection is up and Redis answers (readiness).
    pub async fn check(&self) -> Result<(), String> {
        if !self.adapter.is_connected() {
            return Err("adapter connection down".into());
        }
        if !self.auth_events.is_connected() {
            return Err("auth-events connection down".into());
        }
        tokio::time::timeout(Duration::from_secs(1), self.commands.ping::<String>(None))
            .await
            .map_err(|_| "ping timed out".to_string())?
            .map_err(|e| format!("ping failed: {e}"))?;
        Ok(())
    }
}

/// Re-subscribes `client`'s tracked shard channels after each reconnect (fred does not).
async fn restore_shard_channels(client: SubscriberClient, what: &'static str) {
    let mut reconnects = client.reconnect_rx();
    while reconnects.recv().await.is_ok() {
        let channels: Vec<String> = client
            .tracked_shard_channels()
            .iter()
            .map(ToString::to_string)
            .collect();
        let restored = ssubscribe_each(&client, &channels, what).await;
        tracing::info!(
            restored,
            total = channels.len(),
            "redis reconnected, {what} channels restored"
        );
    }
}

/// Subscribes `client` to each shard channel again, one at a time (a multi-channel SSUBSCRIBE
/// restored only some channels); logs each that fails (`what` names them). How many succeeded.
pub async fn ssubscribe_each(
    client: &SubscriberClient,
    channels: &[String],
    what: &'static str,
) -> usize {
    let mut restored = 0usize;
    for channel in channels {
        match client.ssubscribe(channel.clone()).await {
            Ok(()) => restored += 1,
            Err(error) => tracing::warn!(%error, %channel, what, "cannot restore a channel"),
        }
    }
    restored
}

/// Subscribes `client` to the shard `channels` (the receiver taken first, so no message falls in
/// between), then hands each message, decoded from JSON as `T`, to `handle` until the replica
/// stops (`tasks`; `what` names the listener). `lagged` is told how many messages it lost when
/// it fell behind. Reconnects re-subscribe through [`RedisClients::restore_subscriptions_on_reconnect`].
pub async fn listen_shards<T, H, L>(
    client: &SubscriberClient,
    channels: Vec<String>,
    tasks: &Tasks,
    what: &'static str,
    mut handle: H,
    lagged: L,
) -> Result<(), fred::error::Error>
where
    T: DeserializeOwned,
    H: FnMut(T) + Send + 'static,
    L: Fn(u64) + Send + 'static,
{
    let mut messages = client.message_rx();
    for channel in channels {
        client.ssubscribe(channel).await?;
    }
    tasks.spawn(what, async move {
        loop {
            match messages.recv().await {
                Ok(message) => {
                    let decoded = message
                        .value
                        .as_string()
                        .and_then(|text| serde_json::from_str::<T>(&text).ok());
                    match decoded {
                        Some(decoded) => handle(decoded),
                        None => {
                            tracing::warn!(channel = %message.channel, what, "unreadable message")
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(lost)) => lagged(lost),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(())
}
