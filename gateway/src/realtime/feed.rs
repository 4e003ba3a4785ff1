//! The recovery feed on this replica: each kept entry, in the order the log published it, handed
//! to the gates (`recovery::gate::Gate`) of this replica's sockets in its room, except a
//! revocation notice this replica already told them of ([`RevocationNotices::already_told`]).
//! A hole in it (the subscription dropped, the listener fell behind) is filled by a resync of
//! the sockets ([`super::resync`]). The socket side of recovery; what is kept, and how, is
//! `recovery`'s.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use fred::{
    clients::{Client, SubscriberClient},
    interfaces::{EventInterface, PubsubInterface},
};
use shared::namespace::Namespace;
use tokio::sync::{broadcast, mpsc};

use super::{io::Io, notices::RevocationNotices, resync::Resync};
use crate::{
    recovery::{Entry, Published},
    store::redis::{listen_shards, ssubscribe_each},
    tasks::Tasks,
    telemetry::metrics,
};

/// Hands each entry, in feed order, to the gates of this replica's sockets in its room (the
/// memory log's feed).
pub async fn run_feed(
    io: Io,
    mut entries: mpsc::UnboundedReceiver<Entry>,
    notices: Arc<RevocationNotices>,
) {
    while let Some(entry) = entries.recv().await {
        let Some(ns) = entry.namespace() else {
            continue;
        };
        let room = entry.room.clone();
        io.to_gates(ns, &room, || {
            (!notices.already_told(&entry)).then_some(entry)
        });
    }
}

/// The recovery channels of the cluster, as this replica holds them.
pub struct Channels {
    /// Subscribed to every channel.
    pub listener: SubscriberClient,
    /// Publishes this replica's markers.
    pub publisher: Client,
    pub names: Vec<String>,
}

/// The same for the cluster: the entries every replica publishes on the recovery channels, in
/// the order each channel carries them. When the subscription drops (Redis restarted, failed
/// over) or the listener falls behind, this replica's sockets are caught up ([`Resync`]).
pub async fn listen(
    channels: Channels,
    io: Io,
    notices: Arc<RevocationNotices>,
    resync: Arc<Resync>,
    tasks: &Tasks,
) -> Result<(), fred::error::Error> {
    let (heard_tx, heard) = mpsc::unbounded_channel();
    let (lag_tx, lags) = mpsc::unbounded_channel();
    let to_gates = move |published: Published| {
        if let Some(marker) = published.sync {
            let _ = heard_tx.send(marker);
            return;
        }
        let Some(ns) = Namespace::from_path(&published.ns) else {
            return;
        };
        for (room, offset) in &published.kept {
            io.to_gates(ns, room, || {
                let entry = published.entry(room, *offset);
                (!notices.already_told(&entry)).then_some(entry)
            });
        }
    };
    // Held before the next message is handed on: the lost entries come from the log first.
    let held_on_lag = resync.clone();
    let lagged = move |lost| {
        metrics::recovery_feed_lagged(lost);
        tracing::warn!(lost, "recovery feed lagged: catching sockets up");
        held_on_lag.hold_all();
        let _ = lag_tx.send(());
    };
    listen_shards(
        &channels.listener,
        channels.names.clone(),
        tasks,
        "recovery feed",
        to_gates,
        lagged,
    )
    .await?;
    tasks.spawn(
        "recovery feed resync",
        resync_on_holes(channels, resync, heard, lags),
    );
    Ok(())
}

/// Attempts at re-subscribing before the replica gives its sockets up as gaps.
const RESUBSCRIBE_ATTEMPTS: usize = 3;

/// How long a marker may take to come back.
const MARKER_BOUND: Duration = Duration::from_secs(2);

/// Added to how long a hole lasted, for the catch-up's lookback: what was published just before
/// the connection was seen to drop, or lost by a listener that fell behind, is read again.
const LOOKBACK_SLACK: Duration = Duration::from_secs(30);

/// After each reconnect of the listener: hold every gate, re-subscribe every channel, wait
/// until a marker published on each comes back (fred's subscribe answers before Redis has
/// subscribed), then catch the sockets up from when the connection dropped. After a lag: catch
/// them up (held already).
async fn resync_on_holes(
    channels: Channels,
    resync: Arc<Resync>,
    mut heard: mpsc::UnboundedReceiver<String>,
    mut lags: mpsc::UnboundedReceiver<()>,
) {
    let mut reconnects = channels.listener.reconnect_rx();
    let mut errors = channels.listener.error_rx();
    // When the connection was first seen to fail since the last catch-up.
    let mut broke_at: Option<Instant> = None;
    loop {
        tokio::select! {
            reconnected = reconnects.recv() => {
                if matches!(reconnected, Err(broadcast::error::RecvError::Closed)) {
                    return;
                }
                // Several at once (a cluster's nodes): one resync covers them all.
                while reconnects.try_recv().is_ok() {}
                let held = resync.hold_all();
                let back = resubscribe(&channels, &mut heard).await;
                let hole = broke_at.take().map_or(Duration::ZERO, |at| at.elapsed());
                let hole_ms = hole.as_millis() as u64;
                tracing::info!(held, back, hole_ms, "recovery channels restored after a reconnect");
                resync.catch_up_all(back, hole + LOOKBACK_SLACK).await;
            }
            Ok(_) = errors.recv() => {
                broke_at.get_or_insert_with(Instant::now);
            }
            Some(()) = lags.recv() => {
                while lags.try_recv().is_ok() {}
                resync.catch_up_all(true, LOOKBACK_SLACK).await;
            }
        }
    }
}

/// Re-subscribes every channel until a marker published on each is heard back: `false` when
/// that did not happen within [`RESUBSCRIBE_ATTEMPTS`].
async fn resubscribe(channels: &Channels, heard: &mut mpsc::UnboundedReceiver<String>) -> bool {
    for attempt in 1..=RESUBSCRIBE_ATTEMPTS {
        ssubscribe_each(&channels.listener, &channels.names, "recovery").await;
        if markers_heard(channels, heard).await {
            return true;
        }
        tracing::warn!(attempt, "recovery channels not confirmed back");
    }
    false
}

/// Publishes a marker on every channel and waits for all of them within [`MARKER_BOUND`].
async fn markers_heard(channels: &Channels, heard: &mut mpsc::UnboundedReceiver<String>) -> bool {
    while heard.try_recv().is_ok() {}
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let mut waiting: HashSet<String> = HashSet::new();
    for (i, channel) in channels.names.iter().enumerate() {
        let marker = format!("{nonce}-{i}");
        let message = serde_json::json!({ "sync": marker }).to_string();
        match channels
            .publisher
            .spublish::<i64, _, _>(channel.clone(), message)
            .await
        {
            Ok(_) => {
                waiting.insert(marker);
            }
            Err(error) => {
                tracing::warn!(%error, %channel, "cannot publish a recovery marker");
                return false;
            }
        }
    }
    let all_back = async {
        while !waiting.is_empty() {
            match heard.recv().await {
                Some(marker) => {
                    waiting.remove(&marker);
                }
                None => return false,
            }
        }
        true
    };
    tokio::time::timeout(MARKER_BOUND, all_back)
        .await
        .unwrap_or(false)
}
