//! The recovery feed on this replica: each kept entry, in the order the log published it, handed
//! to the gates (`recovery::gate::Gate`) of this replica's sockets in its room, except a
//! revocation notice this replica already told them of ([`RevocationNotices::already_told`]). The socket side of recovery;
//! what is kept, and how, is `recovery`'s.

use std::sync::Arc;

use fred::clients::SubscriberClient;
use shared::namespace::Namespace;
use tokio::sync::mpsc;

use super::{io::Io, notices::RevocationNotices};
use crate::{
    recovery::{Entry, Published},
    store::redis::listen_shards,
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

/// The same for the cluster: the entries every replica publishes on the recovery channels, in
/// the order each channel carries them.
pub async fn listen(
    client: SubscriberClient,
    channels: Vec<String>,
    io: Io,
    notices: Arc<RevocationNotices>,
    tasks: &Tasks,
) -> Result<(), fred::error::Error> {
    let to_gates = move |published: Published| {
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
    // Those entries stay in the log: a client that missed them recovers them when it
    // reconnects; the counter says it happened.
    let lagged = |lost| {
        metrics::recovery_feed_lagged(lost);
        tracing::warn!(lost, "recovery feed lagged");
    };
    listen_shards(&client, channels, tasks, "recovery feed", to_gates, lagged).await
}
