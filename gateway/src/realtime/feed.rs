//! The recovery feed on this replica: each kept entry, in the order the log published it, handed
//! to the gates ([`Gate`]) of this replica's sockets in its room. The socket side of recovery;
//! what is kept, and how, is `recovery`'s.

use std::sync::Arc;

use fred::{
    clients::SubscriberClient,
    interfaces::{EventInterface, PubsubInterface},
};
use shared::namespace::Namespace;
use socketioxide::adapter::Adapter;
use tokio::sync::{broadcast, mpsc};

use super::Io;
use crate::{
    recovery::{
        Entry, Published,
        gate::{Gate, send},
    },
    telemetry::metrics,
};

/// Hands each entry, in feed order, to the gates of this replica's sockets in its room (the
/// memory log's feed).
pub async fn run_feed(
    io: Io,
    mut entries: mpsc::UnboundedReceiver<Entry>,
    skip: impl Fn(&Entry) -> bool + Send + 'static,
) {
    while let Some(entry) = entries.recv().await {
        let Some(ns) = entry.namespace() else {
            continue;
        };
        let room = entry.room.clone();
        deliver_locally(&io, ns, &room, || (!skip(&entry)).then_some(entry));
    }
}

/// The same for the cluster (`skip`: entries this replica must not hand out again): the entries every replica publishes on the recovery channels, in
/// the order each channel carries them.
pub async fn listen(
    client: SubscriberClient,
    channels: Vec<String>,
    io: Io,
    skip: impl Fn(&Entry) -> bool + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, fred::error::Error> {
    let mut messages = client.message_rx();
    for channel in channels {
        client.ssubscribe(channel).await?;
    }
    Ok(tokio::spawn(async move {
        loop {
            match messages.recv().await {
                Ok(message) => {
                    let published = message
                        .value
                        .as_string()
                        .and_then(|text| serde_json::from_str::<Published>(&text).ok());
                    let Some(published) = published else {
                        tracing::warn!(channel = %message.channel, "unreadable recovery entry");
                        continue;
                    };
                    let Some(ns) = Namespace::from_path(&published.ns) else {
                        continue;
                    };
                    for (room, offset) in &published.kept {
                        deliver_locally(&io, ns, room, || {
                            let entry = published.entry(room, *offset);
                            (!skip(&entry)).then_some(entry)
                        });
                    }
                }
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    // Those entries stay in the log: a client that missed them recovers them
                    // when it reconnects; the counter says it happened.
                    metrics::recovery_feed_lagged(lost);
                    tracing::warn!(lost, "recovery feed lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }))
}

/// Hands an entry of `room` to the gates of this replica's sockets in it. The entry is made (and
/// `make` may skip it) only when there are some: with many replicas, most replicas hold no
/// socket of most rooms a push names.
pub fn deliver_locally(io: &Io, ns: Namespace, room: &str, make: impl FnOnce() -> Option<Entry>) {
    fn on<A: Adapter>(
        io: &socketioxide::SocketIo<A>,
        ns: Namespace,
        room: &str,
        make: impl FnOnce() -> Option<Entry>,
    ) {
        let Some(op) = io.of(ns.path()) else { return };
        let sockets = op.local().within(room.to_owned()).sockets();
        if sockets.is_empty() {
            return;
        }
        let Some(entry) = make() else { return };
        metrics::emit(ns, &entry.event);
        for s in sockets {
            if let Some(gate) = s.extensions.get::<Arc<Gate>>() {
                gate.offer(&entry, |e| send(&s, e));
            }
        }
    }
    on_io!(io, io => on(io, ns, room, make))
}
