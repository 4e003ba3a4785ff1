//! A minimal Socket.IO client over WebSocket (Engine.IO v4 text framing), light enough to hold
//! tens of thousands of connections in one process: one task per connection, no timers.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use tokio::{net::TcpSocket, sync::mpsc};
use tokio_tungstenite::{
    client_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

/// What a connection hears, besides pings (answered in place).
#[derive(Debug)]
pub enum Incoming {
    /// `43{nsp},{id}[...]`: the acknowledgement of packet `id`, raw JSON arguments.
    Ack { id: u64, args: String },
    /// `42{nsp},[...]`: an event, raw JSON array.
    Event { raw: String },
    /// `41{nsp},`: the server disconnected this socket from the namespace.
    Disconnected,
    /// The transport closed.
    Closed,
}

/// An open, greeted socket.
pub struct Client {
    pub nsp: &'static str,
    outgoing: mpsc::Sender<String>,
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
}

/// Why the answer to an acknowledgement did not come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    TimedOut,
    Closed,
}

impl Client {
    /// Emits `event` with `data` (raw JSON) and an ack id.
    pub async fn emit_with_ack(&self, id: u64, event: &str, data: &str) -> bool {
        let packet = format!("42{},{id}[\"{event}\",{data}]", self.nsp);
        self.outgoing.send(packet).await.is_ok()
    }

    /// The raw JSON arguments of the answer to ack `id`, waiting at most `within`; whatever
    /// else arrives meanwhile is dropped.
    pub async fn answer(&mut self, id: u64, within: Duration) -> Result<String, NoAnswer> {
        let answer = async {
            loop {
                match self.incoming.recv().await {
                    Some(Incoming::Ack { id: got, args }) if got == id => return Ok(args),
                    Some(Incoming::Closed | Incoming::Disconnected) | None => {
                        return Err(NoAnswer::Closed);
                    }
                    Some(_) => {}
                }
            }
        };
        tokio::time::timeout(within, answer)
            .await
            .unwrap_or(Err(NoAnswer::TimedOut))
    }
}

/// tungstenite's default read buffer is 128 KiB, zeroed on every read: measured, that memset was
/// four fifths of loadgen's CPU, stolen from the servers it measures on a shared machine.
/// Socket.IO frames here are small; 4 KiB grows on demand for larger ones.
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

/// Opens a WebSocket from `source`, joins `nsp` with `token`, and waits for `hello`.
/// Returns the client and the time from TCP connect to `hello`.
pub async fn open(
    server: SocketAddr,
    source: IpAddr,
    nsp: &'static str,
    token: &str,
) -> anyhow::Result<(Client, Duration)> {
    let started = Instant::now();
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket
        .bind(SocketAddr::new(source, 0))
        .context("bind source address")?;
    let stream = socket.connect(server).await.context("tcp connect")?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{server}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = client_async_with_config(url, stream, Some(websocket_config()))
        .await
        .context("websocket upgrade")?;
    let mut joined = false;
    loop {
        let Some(message) = ws.next().await else {
            bail!("closed during handshake")
        };
        let Message::Text(text) = message? else {
            continue;
        };
        let text = text.as_str();
        if text.starts_with("0{") {
            ws.send(Message::text(format!("40{nsp},{{\"token\":\"{token}\"}}")))
                .await?;
        } else if text == "2" {
            ws.send(Message::text("3")).await?;
        } else if let Some(rest) = text.strip_prefix(&format!("44{nsp},")) {
            bail!("connect_error: {rest}");
        } else if text.starts_with(&format!("40{nsp},")) {
            joined = true;
        } else if joined && text.starts_with(&format!("42{nsp},[\"hello\"")) {
            break;
        }
    }
    let latency = started.elapsed();
    let (outgoing, mut to_send) = mpsc::channel::<String>(16);
    let (heard, incoming) = mpsc::unbounded_channel();
    let prefix_ack = format!("43{nsp},");
    let prefix_event = format!("42{nsp},");
    let prefix_disconnect = format!("41{nsp}");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                message = ws.next() => {
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            let _ = heard.send(Incoming::Closed);
                            return;
                        }
                        Some(Ok(_)) => continue,
                    };
                    let text = text.as_str();
                    let parsed = if text == "2" {
                        if ws.send(Message::text("3")).await.is_err() { return; }
                        continue;
                    } else if let Some(rest) = text.strip_prefix(&prefix_ack) {
                        let split = rest.find('[').unwrap_or(rest.len());
                        let Ok(id) = rest[..split].parse() else { continue };
                        Incoming::Ack { id, args: rest[split..].to_owned() }
                    } else if let Some(rest) = text.strip_prefix(&prefix_event) {
                        Incoming::Event { raw: rest.to_owned() }
                    } else if text.starts_with(&prefix_disconnect) {
                        Incoming::Disconnected
                    } else {
                        continue;
                    };
                    // Nobody listening (idle scenario) is fine.
                    let _ = heard.send(parsed);
                }
                out = to_send.recv() => match out {
                    Some(packet) => {
                        if ws.send(Message::text(packet)).await.is_err() { return; }
                    }
                    None => {
                        let _ = ws.close(None).await;
                        return;
                    }
                },
            }
        }
    });
    Ok((
        Client {
            nsp,
            outgoing,
            incoming,
        },
        latency,
    ))
}
