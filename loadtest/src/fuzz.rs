//! `fuzz`: mutated Engine.IO / Socket.IO packets against a live replica, bounded by a packet
//! count, while a control client keeps asking for acknowledgements. The replica passes when the
//! control client got every answer and can still connect at the end: a bad packet may cost its
//! own session, never the replica.
//!
//! Each fuzzing session is a raw WebSocket that completes a real handshake first (so mutations
//! reach the event handlers, not only the parser), then sends mutations of valid packets: bytes
//! flipped, inserted, cut, repeated; numbers made huge; types swapped; deep nesting; long
//! strings; binary frames. When the server closes a session, the next one opens. A fixed seed
//! makes a run repeatable.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::{WebSocketStream, client_async, tungstenite::Message};

use crate::{
    client,
    identities::{self, Kind},
    scenarios::Targets,
};

/// Valid packets of the drivers' namespace, the seeds of every mutation.
const CORPUS: &[&str] = &[
    "2",
    "3",
    "6",
    r#"42/drivers,1["driver:status",{"status":"ONLINE"}]"#,
    r#"42/drivers,2["driver:location",{"lat":48.85,"lng":2.35,"heading":90,"speed":3.5,"recordedAt":"2026-12-02T10:00:00Z"}]"#,
    r#"42/drivers,["driver:location",{"lat":1,"lng":2}]"#,
    r#"42/drivers,3["auth:refresh",{"token":"x.y.z"}]"#,
    r#"42/drivers,4["no-such-event",{"a":[1,2,3]}]"#,
    r#"43/drivers,7[{"accept":true}]"#,
    r#"451-/drivers,5["driver:status",{"_placeholder":true,"num":0}]"#,
    r#"40/admin,{"token":"x"}"#,
    r#"40/nowhere,"#,
    "41/drivers,",
    r#"42["driver:status",{"status":"BUSY"}]"#,
];

/// What one run did and whether the replica kept serving.
#[derive(Debug, Serialize)]
pub struct FuzzResult {
    pub seed: u64,
    pub packets: u64,
    pub binary_frames: u64,
    pub sessions_opened: u64,
    pub sessions_closed_by_server: u64,
    pub control: Control,
    /// A new client connected after the last packet.
    pub connects_after: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Control {
    pub asked: u64,
    pub answered: u64,
    pub longest_ms: u64,
}

/// xorshift64*: repeatable, no dependency, plenty for picking mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of a corpus packet: a text frame, or `Err` bytes for a binary frame.
fn mutate(rng: &mut Rng) -> Result<String, Vec<u8>> {
    let base = CORPUS[rng.below(CORPUS.len())];
    let mut bytes = base.as_bytes().to_vec();
    match rng.below(12) {
        0 => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(bytes.len() + 1);
            let junk: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
            bytes.splice(i..i, junk);
        }
        2 => bytes.truncate(rng.below(bytes.len())),
        3 => {
            let start = rng.below(bytes.len());
            let end = (start + 1 + rng.below(8)).min(bytes.len());
            bytes.drain(start..end);
        }
        4 => {
            let copy = bytes.clone();
            for _ in 0..rng.below(4) {
                bytes.extend_from_slice(&copy);
            }
        }
        5 => {
            let huge = [
                "1e400",
                "-0",
                "18446744073709551616",
                "NaN",
                "1.7976931348623157e308",
            ];
            let text = base.replacen(char::is_numeric, huge[rng.below(huge.len())], 1);
            bytes = text.into_bytes();
        }
        6 => {
            let swaps = [
                ("{", "["),
                ("\"", "'"),
                ("[", "{"),
                (":", ","),
                ("true", "null"),
            ];
            let (from, to) = swaps[rng.below(swaps.len())];
            bytes = base.replacen(from, to, 1 + rng.below(2)).into_bytes();
        }
        7 => {
            let depth = 1 + rng.below(5_000);
            bytes = format!(
                r#"42/drivers,9["driver:status",{}{}]"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
            .into_bytes();
        }
        8 => {
            let long = "x".repeat(1 + rng.below(20_000));
            bytes = format!(r#"42/drivers,8["driver:status",{{"status":"{long}"}}]"#).into_bytes();
        }
        9 => {
            let other = CORPUS[rng.below(CORPUS.len())];
            let cut = rng.below(bytes.len());
            bytes.truncate(cut);
            bytes.extend_from_slice(&other.as_bytes()[rng.below(other.len())..]);
        }
        10 => return Err((0..rng.below(64)).map(|_| rng.next() as u8).collect()),
        _ => {
            let unicode = ["\u{0}", "\u{FFFF}", "é", "🚕", "\u{202E}", "\\ud800"];
            let i = rng.below(bytes.len() + 1);
            let text = unicode[rng.below(unicode.len())].as_bytes();
            bytes.splice(i..i, text.iter().copied());
        }
    }
    // Text frames must be UTF-8 (tungstenite checks): invalid bytes go as a binary frame.
    String::from_utf8(bytes).map_err(|e| e.into_bytes())
}

type Ws = WebSocketStream<tokio::net::TcpStream>;

/// A raw session past its handshake, or `None` when the server refused or closed it first.
async fn open_session(server: SocketAddr, token: &str) -> anyhow::Result<Option<Ws>> {
    let url = format!("ws://{server}/socket.io/?EIO=4&transport=websocket");
    let tcp = tokio::net::TcpStream::connect(server)
        .await
        .context("fuzz session connect")?;
    let (mut ws, _) = client_async(url, tcp)
        .await
        .context("fuzz session upgrade")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let next = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        let Ok(Some(Ok(Message::Text(text)))) = next else {
            return Ok(None);
        };
        let text = text.as_str();
        if text.starts_with("0{") {
            ws.send(Message::text(format!(
                r#"40/drivers,{{"token":"{token}"}}"#
            )))
            .await?;
        } else if text == "2" {
            ws.send(Message::text("3")).await?;
        } else if text.starts_with("42/drivers,[\"hello\"") {
            return Ok(Some(ws));
        } else if text.starts_with("44/drivers,") {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Sends `packets` mutations over `sessions` concurrent raw sessions to the first server, while
/// seeded driver 0 is the control client. Each session the server closes is replaced by one of
/// the next seeded driver (1..=identities, round robin), so the per-user handshake rate is not
/// what ends the run.
pub async fn fuzz(
    t: &Targets,
    sessions: u32,
    packets: u64,
    seed: u64,
    identities: u32,
) -> anyhow::Result<FuzzResult> {
    let server = t.server(0);
    let control_token = identities::token(&t.jwt_secret, Kind::Driver, 0)?;
    let (mut control, _) = client::open(server, t.source(0), "/drivers", &control_token)
        .await
        .context("the control client cannot connect")?;

    let per_session = packets.div_ceil(u64::from(sessions.max(1)));
    let mut workers = Vec::new();
    let sessions = sessions.max(1);
    let identities = identities.max(sessions);
    for s in 0..sessions {
        let secret = t.jwt_secret.clone();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(s + 1) | 1);
        workers.push(tokio::spawn(async move {
            let mut sent = (0u64, 0u64, 0u64, 0u64); // packets, binary, opened, closed
            let mut ws = None;
            let mut next_identity = s;
            while sent.0 < per_session {
                let Some(session) = ws.as_mut() else {
                    let token =
                        identities::token(&secret, Kind::Driver, 1 + next_identity % identities)?;
                    next_identity += sessions;
                    ws = open_session(server, &token).await?;
                    if ws.is_none() {
                        // Refused (e.g. a rate limit after many reopenings): wait a little.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    sent.2 += 1;
                    continue;
                };
                let frame = match mutate(&mut rng) {
                    Ok(text) => Message::text(text),
                    Err(bytes) => {
                        sent.1 += 1;
                        Message::binary(bytes)
                    }
                };
                sent.0 += 1;
                let alive = session.send(frame).await.is_ok() && drain(session).await;
                if !alive {
                    sent.3 += 1;
                    ws = None;
                }
            }
            anyhow::Ok(sent)
        }));
    }

    let mut result_control = Control::default();
    let fuzzing = futures::future::join_all(workers);
    tokio::pin!(fuzzing);
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let mut ack_id = 1_000_000u64;
    let outcomes = loop {
        tokio::select! {
            outcomes = &mut fuzzing => break outcomes,
            _ = ticker.tick() => {
                ack_id += 1;
                result_control.asked += 1;
                let asked = Instant::now();
                if !control.emit_with_ack(ack_id, "driver:status", r#"{"status":"ONLINE"}"#).await {
                    bail!("the control client's connection closed");
                }
                if await_ack(&mut control, ack_id).await {
                    result_control.answered += 1;
                    result_control.longest_ms = result_control.longest_ms.max(asked.elapsed().as_millis() as u64);
                }
            }
        }
    };
    let (mut packets_sent, mut binary, mut opened, mut closed) = (0, 0, 0, 0);
    for outcome in outcomes {
        let (p, b, o, c) = outcome.context("a fuzz session panicked")??;
        packets_sent += p;
        binary += b;
        opened += o;
        closed += c;
    }
    let connects_after = client::open(server, t.source(0), "/drivers", &control_token)
        .await
        .is_ok();
    Ok(FuzzResult {
        seed,
        packets: packets_sent,
        binary_frames: binary,
        sessions_opened: opened,
        sessions_closed_by_server: closed,
        control: result_control,
        connects_after,
    })
}

/// Reads what the server sent meanwhile (answering pings); `false` once it closed the session.
async fn drain(ws: &mut Ws) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_millis(1), ws.next()).await {
            Err(_) => return true,
            Ok(Some(Ok(Message::Text(text)))) if text.as_str() == "2" => {
                if ws.send(Message::text("3")).await.is_err() {
                    return false;
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return false,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// The control client's answer to `id` within 2 s.
async fn await_ack(control: &mut client::Client, id: u64) -> bool {
    control
        .answer(id, Duration::from_secs(2))
        .await
        .is_ok_and(|args| args.contains("\"ok\":true"))
}
