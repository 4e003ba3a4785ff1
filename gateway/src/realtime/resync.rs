//! Connected sockets after a hole in the recovery feed (issue 23, "no gap after a blip"): Redis
//! restarted or failed over and this replica's subscription was down for a while, or its
//! listener fell behind and lost messages. Entries kept meanwhile are in the log but never
//! reached the gates. So every socket of a user room holds its gate again *before* the feed can
//! deliver anew ([`Resync::hold_all`]), then catches up from where it stands, the last offset it
//! got or the position `hello` gave it ([`Resync::catch_up_all`]): in order, once, as a
//! reconnecting client does. Where it stands may be long ago (a quiet room): everything before
//! the hole reached it, so the log reads from the room's position when the hole began instead
//! (`RecoveryLog::catch_up`, with a lookback a little longer than the hole).
//!
//! What cannot be caught up is never missed silently: when the log no longer has the socket's
//! offset (Redis came back empty, or lost its last writes), when it does not answer, or when the
//! socket was never told where it stands, its transport is closed ([`gap`]): the stock client
//! reconnects by itself, and is answered `socket.recovered === false`, its signal to refetch.
//! Counted in `gateway_recovery_gaps_total`. Drivers are also sent their open offers again: an
//! offer sent through the adapter while the subscription was down reached nobody here.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use shared::namespace::Namespace;
use socketioxide::{SocketIo, adapter::Adapter, extract::SocketRef};

use super::{context::SocketContext, io::Io, offers::Offers};
use crate::{
    recovery::{
        gate::{self, Gate, Held},
        log::{RecoveryLog, Resume},
        resume,
    },
    telemetry::metrics,
};

/// Sockets caught up at once: a replica with tens of thousands of sockets reads their logs
/// without queueing that many commands on Redis at the moment it comes back.
const CONCURRENT_CATCH_UPS: usize = 64;

/// Namespaces whose sockets have a user room, and so a gate.
const WITH_GATES: [Namespace; 2] = [Namespace::Drivers, Namespace::Passengers];

/// Why a socket could not be caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The log no longer has its offset (Redis came back empty, or without its last writes).
    NotKept,
    /// The log did not answer in time, or the feed could not be confirmed back.
    Unreadable,
    /// It was never told where it stands (the log did not answer when it connected).
    NoPosition,
}

impl GapReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::NotKept => "not_kept",
            Self::Unreadable => "unreadable",
            Self::NoPosition => "no_position",
        }
    }
}

/// Ends a socket that may have missed kept events, with a reason the client reconnects from.
pub fn gap<A: Adapter>(s: &SocketRef<A>, reason: GapReason) {
    if let Some(ns) = Namespace::from_path(s.ns()) {
        metrics::recovery_gap(ns, reason.label());
    }
    tracing::info!(socket = %s.id, reason = reason.label(), "socket may have missed kept events: closing its transport");
    s.close_transport();
}

/// This replica's side of a hole in the feed.
pub struct Resync {
    io: Io,
    log: Arc<dyn RecoveryLog>,
    offers: Arc<Offers>,
}

impl Resync {
    pub fn new(io: Io, log: Arc<dyn RecoveryLog>, offers: Arc<Offers>) -> Self {
        Self { io, log, offers }
    }

    /// Holds the gate of every socket with one: entries arriving from now on wait for its
    /// catch-up. Cheap and synchronous, so the listener can call it before its next message.
    pub fn hold_all(&self) -> usize {
        fn hold<A: Adapter>(io: &SocketIo<A>) -> usize {
            sockets(io)
                .filter_map(|(_, s)| s.extensions.get::<Arc<Gate>>())
                .filter(|gate| gate.hold() != Held::Replaying)
                .count()
        }
        on_io!(&self.io, io => hold(io))
    }

    /// Catches every socket up after a hole that began at most `lookback` ago (`feed_back`:
    /// the feed is confirmed to deliver again; if not, every socket is a gap). Holds the gate
    /// of any socket that connected since [`Resync::hold_all`] too.
    pub async fn catch_up_all(&self, feed_back: bool, lookback: Duration) {
        let sockets = on_io!(&self.io, io => self.catch_up_in(io, feed_back, lookback).await);
        tracing::info!(
            sockets,
            feed_back,
            lookback_ms = lookback.as_millis() as u64,
            "sockets caught up after a hole in the recovery feed"
        );
    }

    async fn catch_up_in<A: Adapter>(
        &self,
        io: &SocketIo<A>,
        feed_back: bool,
        lookback: Duration,
    ) -> usize {
        let sockets: Vec<(Namespace, SocketRef<A>)> = sockets(io).collect();
        let n = sockets.len();
        futures::stream::iter(sockets)
            .for_each_concurrent(CONCURRENT_CATCH_UPS, |(ns, s)| async move {
                self.catch_up(ns, &s, feed_back, lookback).await;
            })
            .await;
        n
    }

    async fn catch_up<A: Adapter>(
        &self,
        ns: Namespace,
        s: &SocketRef<A>,
        feed_back: bool,
        lookback: Duration,
    ) {
        let (Some(gate), Some(ctx)) = (
            s.extensions.get::<Arc<Gate>>(),
            s.extensions.get::<Arc<SocketContext>>(),
        ) else {
            return;
        };
        let Some(room) = resume::user_room(ns, ctx.user_id()) else {
            return;
        };
        let from = match gate.hold() {
            // Connected just now: its own replay covers it.
            Held::Replaying => return,
            Held::Nowhere => return gap(s, GapReason::NoPosition),
            Held::From(_) if !feed_back => return gap(s, GapReason::Unreadable),
            Held::From(from) => from,
        };
        match resume::read_within_bound(s, &*self.log, &room, Some(from), Some(lookback)).await {
            Some(Resume {
                missed: Some(missed),
                head,
            }) => {
                metrics::recovery_caught_up(ns, missed.len());
                gate.finish(missed, Some(head), |entry| gate::send(s, entry), |_| {});
            }
            Some(Resume { missed: None, .. }) => return gap(s, GapReason::NotKept),
            None => return gap(s, GapReason::Unreadable),
        }
        if ns == Namespace::Drivers && s.connected() {
            self.offers.redeliver(s, ctx.user_id()).await;
        }
    }
}

/// This replica's sockets of the namespaces with gates.
fn sockets<A: Adapter>(io: &SocketIo<A>) -> impl Iterator<Item = (Namespace, SocketRef<A>)> {
    WITH_GATES.into_iter().flat_map(move |ns| {
        io.of(ns.path())
            .map(|op| op.local().sockets())
            .unwrap_or_default()
            .into_iter()
            .map(move |s| (ns, s))
    })
}
