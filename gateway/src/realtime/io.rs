//! This replica's Socket.IO server in either mode, as the rest of the gateway holds it: [`Io`],
//! and [`on_io!`], the one place the single replica (in-memory adapter) and the cluster (Redis
//! adapter over fred) are told apart. Handlers are generic over the adapter; this file picks.
//! Built by [`super::server`].

/// Runs `$body` with `$io` bound to the `SocketIo` of either mode: the one place the two are
/// matched.
macro_rules! on_io {
    ($value:expr, $io:ident => $body:expr) => {
        match $value {
            $crate::realtime::io::Io::Single($io) => $body,
            $crate::realtime::io::Io::Cluster($io) => $body,
        }
    };
}

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use shared::{events::TripOffer, namespace::Namespace};
use socketioxide::{
    SocketIo,
    adapter::{Adapter, Emitter, LocalAdapter},
    extract::SocketRef,
    layer::SocketIoLayer,
};
use socketioxide_redis::FredAdapter;

use super::deliver::{self, ClusterUnreachable, Emitted, OfferAnswers, Recipient};
use crate::recovery::{Entry, log::RecoveryLog};

/// The adapter of cluster mode.
pub type ClusterAdapter = FredAdapter<Emitter>;

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

/// Server events to users, from outside a socket handler (the internal API, presence upkeep):
/// the same [`deliver::send`] a handler calls, with this replica's recovery log.
#[derive(Clone)]
pub struct Delivery {
    pub io: Io,
    /// `None` when recovery is off.
    pub log: Option<Arc<dyn RecoveryLog>>,
}

impl Delivery {
    /// Sends `event` to `to`, cluster-wide ([`deliver::send`]).
    pub async fn send<T: Serialize + ?Sized>(
        &self,
        to: &Recipient,
        event: &str,
        data: &T,
    ) -> Result<Emitted, ClusterUnreachable> {
        let log = self.log.as_deref();
        on_io!(&self.io, io => deliver::send(io, log, to, event, data).await)
    }
}

/// How often the drain closes its next share of connections.
const DRAIN_TICK: Duration = Duration::from_millis(100);

impl Io {
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

    /// Hands a kept entry of `room` to the gates of this replica's sockets in it
    /// ([`deliver::to_gates`]).
    pub fn to_gates(&self, ns: Namespace, room: &str, make: impl FnOnce() -> Option<Entry>) {
        on_io!(self, io => deliver::to_gates(io, ns, room, make))
    }

    /// Disconnects `to`'s sockets, cluster-wide.
    pub async fn disconnect(&self, to: &Recipient) -> Result<(), ClusterUnreachable> {
        on_io!(self, io => deliver::disconnect(io, to).await)
    }

    /// Sockets in any of `rooms`, cluster-wide.
    pub async fn count(&self, ns: Namespace, rooms: Vec<String>) -> Option<usize> {
        on_io!(self, io => deliver::count(io, ns, rooms).await)
    }

    /// Sends an offer to every socket of `driver`, cluster-wide: the answers as they come.
    pub async fn offer(
        &self,
        driver: &str,
        payload: &TripOffer,
        expires_in: Duration,
    ) -> Result<OfferAnswers, ClusterUnreachable> {
        on_io!(self, io => deliver::offer(io, driver, payload, expires_in).await)
    }
}
