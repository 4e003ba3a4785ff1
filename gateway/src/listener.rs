//! The HTTP/1.1 listeners: what a connection may cost before it is a socket, and how many there
//! may be.
//!
//! `axum::serve` has no header-read timeout and no connection cap: a few thousand clients that
//! open a connection and send half a request head used up the file descriptors, and then even
//! the probes timed out. Here every connection holds a permit of its listener's cap for its whole
//! life (a WebSocket's too: the permit travels with the upgraded I/O); past the cap a new
//! connection is closed at once and counted, so the process always has descriptors left for the
//! internal listener, PostgreSQL and Redis. A request head must arrive within the header-read
//! timeout, which also closes keep-alive connections left idle that long, and may be at most
//! [`MAX_HEAD_BYTES`] (431 beyond).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinHandle,
};

use crate::telemetry::metrics;

/// Largest request head (request line and headers). Browsers and the apps send well under 4 KB;
/// an access token is at most 8 KB (longer is refused anyway). hyper's default is about 400 KB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Descriptors kept out of the public listener's cap by default: the internal listener's
/// connections, PostgreSQL's pool, Redis, files.
const RESERVED_FDS: u64 = 1024;

/// Connections the internal listener holds at once (backends and probes, not clients).
pub const INTERNAL_MAX_CONNECTIONS: usize = 512;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Which listener, in logs and metrics.
    pub name: &'static str,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Raises the soft open-file limit to the hard one and returns the public listener's default
/// cap: that limit less what the rest of the process needs (half of it when the limit is small).
pub fn default_max_connections() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let cap = if limit > 2 * RESERVED_FDS {
        limit - RESERVED_FDS
    } else {
        limit / 2
    };
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// Binds with an accept queue of `backlog` (tokio's `TcpListener::bind` always asks for 128).
pub fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted replica binds its port again while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `router` on `listener` until `stop` turns true; then stops accepting, lets each
/// connection finish its request, and returns once all are closed.
pub fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(MAX_HEAD_BYTES);
        // Every connection task holds a receiver; `closed()` resolves when the last one ends.
        let (open_tx, _) = watch::channel(());
        loop {
            let (tcp, _peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // EMFILE and the like: the cap should prevent them; do not spin.
                        tracing::warn!(listener = limits.name, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = stopped(&mut stop) => break,
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                metrics::connection_refused(limits.name);
                tracing::debug!(
                    listener = limits.name,
                    "connection cap reached; closing a new connection"
                );
                drop(tcp);
                continue;
            };
            let tcp = Permitted {
                tcp,
                _permit: permit,
            };
            connection(&http, tcp, &router, stop.clone(), open_tx.subscribe());
        }
        drop(listener);
        open_tx.closed().await;
    })
}

/// Serves one accepted connection in a task of its own, until it closes or `stop` turns true
/// (then its request in progress finishes). `open` is dropped when the task ends.
fn connection(
    http: &http1::Builder,
    tcp: Permitted,
    router: &Router,
    mut stop: watch::Receiver<bool>,
    open: watch::Receiver<()>,
) {
    // Without TCP_NODELAY, the CONNECT ack and `hello` (two small writes) wait on the client's
    // delayed ACK: about 40 ms added to every handshake.
    if let Err(error) = tcp.tcp.set_nodelay(true) {
        tracing::warn!(%error, "cannot set TCP_NODELAY");
    }
    let conn = http
        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router.clone()))
        .with_upgrades();
    tokio::spawn(async move {
        let _open = open;
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(error) = result {
            // Timeouts, oversized heads, resets: the client's doing, not an incident.
            tracing::debug!(%error, "connection ended with an error");
        }
    });
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A closed channel (the sender gone) means stop too.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A connection's socket with its place under the cap, released when the socket closes (for a
/// WebSocket: when Engine.IO drops the upgraded stream).
struct Permitted {
    tcp: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Permitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Permitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
