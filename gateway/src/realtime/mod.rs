//! The Socket.IO side: namespaces, the handshake middleware, rooms, and the cluster adapter.
//!
//! Handlers are generic over the adapter, so one body of code serves a single replica (in-memory
//! adapter) and the cluster (Redis adapter over fred). [`Io`] is the one place that tells the two
//! apart for the rest of the gateway.

pub mod context;
pub mod sessions;

use std::sync::Arc;

use serde_json::Value;
use shared::{
    events::{HELLO, Hello},
    namespace::Namespace,
};
use socketioxide::{
    SocketIo, SocketIoBuilder,
    adapter::{Adapter, Emitter, LocalAdapter},
    extract::{SocketRef, TryData},
    handler::ConnectHandler,
    layer::SocketIoLayer,
    socket::DisconnectReason,
};
use socketioxide_core::adapter::DefinedAdapter;
use socketioxide_redis::{FredAdapter, RedisAdapterCtr, drivers::fred::FredDriver};

use crate::{
    auth::handshake::{Gatekeeper, HandshakeError},
    config::ServeSettings,
};
use context::SocketContext;

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

impl Io {
    /// A single replica: in-memory adapter, namespaces ready at once.
    pub fn single(settings: &ServeSettings, gate: Arc<Gatekeeper>) -> (Layer, Io) {
        let (layer, io) = engine(settings).build_layer();
        for ns in Namespace::ALL {
            io.ns(ns.path(), handler::<LocalAdapter>(ns, gate.clone()));
        }
        (Layer::Single(layer), Io::Single(io))
    }

    /// A cluster replica: each namespace exists once its adapter channels are subscribed.
    pub async fn cluster(
        settings: &ServeSettings,
        gate: Arc<Gatekeeper>,
        adapter: RedisAdapterCtr<FredDriver>,
    ) -> anyhow::Result<(Layer, Io)> {
        let (layer, io) = engine(settings)
            .with_adapter::<ClusterAdapter>(adapter)
            .build_layer();
        for ns in Namespace::ALL {
            io.ns(ns.path(), handler::<ClusterAdapter>(ns, gate.clone()))
                .await
                .map_err(|e| anyhow::anyhow!("cannot subscribe namespace {ns}: {e}"))?;
        }
        Ok((Layer::Cluster(layer), Io::Cluster(io)))
    }

    /// Disconnects every socket of this replica, with a reason clients reconnect from (drain).
    pub async fn close(&self) {
        match self {
            Io::Single(io) => io.close().await,
            Io::Cluster(io) => io.close().await,
        }
    }

    /// Sockets connected to this replica, all namespaces.
    pub fn local_sockets(&self) -> usize {
        fn count<A: Adapter>(io: &SocketIo<A>) -> usize {
            Namespace::ALL
                .iter()
                .filter_map(|ns| io.of(ns.path()))
                .map(|op| op.local().sockets().len())
                .sum()
        }
        match self {
            Io::Single(io) => count(io),
            Io::Cluster(io) => count(io),
        }
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
}

/// The connect handler of `ns`, behind the handshake middleware.
fn handler<A>(ns: Namespace, gate: Arc<Gatekeeper>) -> impl ConnectHandler<A, (SocketRef<A>,)>
where
    A: Adapter + DefinedAdapter,
{
    let admit = move |s: SocketRef<A>, TryData(auth): TryData<Value>| {
        let gate = gate.clone();
        async move { admit(ns, &s, auth.ok(), &gate).await }
    };
    on_connect::<A>.with(admit)
}

/// The handshake (middleware): on success the socket carries its [`SocketContext`]; on failure
/// the client gets `connect_error` with the error's message.
async fn admit<A: Adapter>(
    ns: Namespace,
    s: &SocketRef<A>,
    auth: Option<Value>,
    gate: &Gatekeeper,
) -> Result<(), HandshakeError> {
    match gate.admit(ns, auth.as_ref(), &s.req_parts().headers).await {
        Ok(identity) => {
            s.extensions
                .insert(Arc::new(SocketContext::new(ns, identity)));
            Ok(())
        }
        Err(error) => {
            match &error {
                HandshakeError::Unavailable(cause) => {
                    tracing::error!(nsp = %ns, socket = %s.id, error = %cause, "handshake failed: dependency down")
                }
                refused => {
                    tracing::info!(nsp = %ns, socket = %s.id, outcome = refused.label(), "handshake refused")
                }
            }
            Err(error)
        }
    }
}

/// After a successful handshake: join the contract's rooms, then say hello.
async fn on_connect<A: Adapter>(s: SocketRef<A>) {
    let Some(ctx) = s.extensions.get::<Arc<SocketContext>>() else {
        // Unreachable: the middleware stores the context before the socket connects.
        tracing::error!(socket = %s.id, "socket without context; disconnecting");
        let _ = s.disconnect();
        return;
    };
    s.join(ctx.rooms());
    let hello = Hello {
        ok: true,
        nsp: s.ns().to_owned(),
    };
    if let Err(error) = s.emit(HELLO, &hello) {
        tracing::warn!(socket = %s.id, %error, "cannot send hello");
    }
    tracing::info!(
        nsp = s.ns(), socket = %s.id, user = ctx.user_id(), sid = ctx.sid(),
        transport = ?s.transport_type(), "socket connected"
    );
    s.on_disconnect(on_disconnect::<A>);
}

async fn on_disconnect<A: Adapter>(s: SocketRef<A>, reason: DisconnectReason) {
    let ctx = s.extensions.get::<Arc<SocketContext>>();
    tracing::info!(
        nsp = s.ns(), socket = %s.id,
        user = ctx.as_deref().map(SocketContext::user_id).unwrap_or("unknown"),
        sid = ctx.as_deref().map(SocketContext::sid).unwrap_or("unknown"),
        %reason, "socket disconnected"
    );
}
