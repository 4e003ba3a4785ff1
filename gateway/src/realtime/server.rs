//! Builds this replica's Socket.IO server in either mode: the Engine.IO settings both share, and
//! each namespace behind its connect handler ([`super::connect`]).

use std::sync::Arc;

use shared::namespace::Namespace;
use socketioxide::{SocketIo, SocketIoBuilder, adapter::LocalAdapter};
use socketioxide_redis::{RedisAdapterCtr, drivers::fred::FredDriver};

use super::{
    connect::handler,
    io::{ClusterAdapter, Io, Layer},
    services::Services,
};
use crate::config::ServeSettings;

/// A single replica: in-memory adapter, namespaces ready at once.
pub fn single(settings: &ServeSettings, svc: Arc<Services>) -> (Layer, Io) {
    let (layer, io) = engine(settings).build_layer();
    for ns in Namespace::ALL {
        io.ns(ns.path(), handler::<LocalAdapter>(ns, svc.clone()));
    }
    (Layer::Single(layer), Io::Single(io))
}

/// A cluster replica: each namespace exists once its adapter channels are subscribed.
pub async fn cluster(
    settings: &ServeSettings,
    svc: Arc<Services>,
    adapter: RedisAdapterCtr<FredDriver>,
) -> anyhow::Result<(Layer, Io)> {
    let (layer, io) = engine(settings)
        .with_adapter::<ClusterAdapter>(adapter)
        .build_layer();
    for ns in Namespace::ALL {
        io.ns(ns.path(), handler::<ClusterAdapter>(ns, svc.clone()))
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe namespace {ns}: {e}"))?;
    }
    Ok((Layer::Cluster(layer), Io::Cluster(io)))
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
        // Memory per idle connection (docs/benchmarks.md): a smaller initial WebSocket read
        // buffer; it grows for larger messages.
        .ws_read_buffer_size(WS_READ_BUFFER_BYTES)
        .max_buffer_size(SEND_BUFFER_PACKETS)
}

/// Packets queued per socket before an emit to it fails (socketioxide's default is 128). A
/// polling client takes the whole queue at its next poll, so a burst of pushes to one passenger
/// (300 at once were refused at 128) must fit; the queue allocates as it fills, so an idle
/// socket pays nothing for the size.
const SEND_BUFFER_PACKETS: usize = 1024;

/// Initial WebSocket read buffer per connection (socketioxide's default is 4096).
const WS_READ_BUFFER_BYTES: usize = 256;
