//! The scenarios, each producing one JSON result.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client as HttpClient, rt::TokioExecutor};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    client::{self, Client, Incoming, NoAnswer},
    identities::{self, Kind},
    report::{CpuMeter, CpuPerOperation, Latency, LatencySummary, rss_kib},
};

/// Where connections go and come from.
pub struct Targets {
    /// Public listeners of the replicas; connection i goes to `servers[i % len]`.
    pub servers: Vec<SocketAddr>,
    /// Source addresses 127.0.0.1 ..= 127.0.0.n: one address has ~28k ephemeral ports.
    pub source_ips: u8,
    pub jwt_secret: String,
}

impl Targets {
    pub(crate) fn server(&self, i: u32) -> SocketAddr {
        self.servers[i as usize % self.servers.len()]
    }

    pub(crate) fn source(&self, i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            1 + (i % u32::from(self.source_ips.max(1))) as u8,
        ))
    }
}

#[derive(Default, Serialize)]
pub struct Errors(BTreeMap<String, u64>);

impl Errors {
    pub(crate) fn add(&mut self, error: &anyhow::Error) {
        let key: String = format!("{error:#}").chars().take(80).collect();
        *self.0.entry(key).or_default() += 1;
    }
}

pub struct Opened {
    pub clients: Vec<(u32, Client)>,
    pub latency: Latency,
    pub errors: Errors,
    pub elapsed: Duration,
}

/// Opens `count` sockets of `kind` (identities `first..`), at most `rate` new ones a second
/// (`None`: as fast as `concurrency` allows).
pub async fn open_many(
    t: &Targets,
    kind: Kind,
    first: u32,
    count: u32,
    rate: Option<f64>,
    concurrency: usize,
) -> anyhow::Result<Opened> {
    // Tokens are signed before the clock starts, as apps hold theirs: signing is the client's
    // cost, not the server's, and would take CPU from the servers on a shared machine.
    let tokens = (first..first + count)
        .map(|i| identities::token(&t.jwt_secret, kind, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (n, token) in (0..count).zip(tokens) {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(f64::from(n) / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = gate.clone().acquire_owned().await?;
        let i = first + n;
        let (server, source) = (t.server(i), t.source(i));
        tasks.spawn(async move {
            let result = client::open(server, source, kind.namespace(), &token).await;
            drop(permit);
            (i, result)
        });
    }
    let mut opened = Opened {
        clients: Vec::with_capacity(count as usize),
        latency: Latency::default(),
        errors: Errors::default(),
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined?;
        match result {
            Ok((client, latency)) => {
                opened.latency.record(latency.as_micros() as u64);
                opened.clients.push((i, client));
            }
            Err(error) => opened.errors.add(&error),
        }
    }
    opened.elapsed = started.elapsed();
    Ok(opened)
}

#[derive(Serialize)]
pub struct IdleResult {
    pub scenario: &'static str,
    pub requested: u32,
    pub connected: usize,
    pub errors: Errors,
    pub handshakes_per_second: f64,
    pub handshake: LatencySummary,
    /// Server processes' resident memory (KiB) before and after, and the growth per connection.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_connection: f64,
}

/// Opens `count` sockets and holds them idle; measures the servers' memory growth.
pub async fn idle(
    t: &Targets,
    kind: Kind,
    // Seeded users `users.start..users.end`, one socket each.
    users: std::ops::Range<u32>,
    rate: Option<f64>,
    server_pids: &[u32],
    settle: Duration,
    hold: Duration,
) -> anyhow::Result<IdleResult> {
    let rss = || server_pids.iter().filter_map(|p| rss_kib(*p)).sum::<u64>();
    let before = rss();
    let count = users.end.saturating_sub(users.start);
    let opened = open_many(t, kind, users.start, count, rate, 2000).await?;
    tokio::time::sleep(settle).await;
    let after = rss();
    tokio::time::sleep(hold).await;
    let connected = opened.clients.len();
    Ok(IdleResult {
        scenario: "idle",
        requested: count,
        connected,
        handshakes_per_second: connected as f64 / opened.elapsed.as_secs_f64(),
        handshake: opened.latency.summary(),
        errors: opened.errors,
        rss_before_kib: before,
        rss_after_kib: after,
        bytes_per_connection: if connected == 0 {
            0.0
        } else {
            (after.saturating_sub(before) * 1024) as f64 / connected as f64
        },
    })
}

#[derive(Serialize)]
pub struct HandshakeResult {
    pub scenario: &'static str,
    pub requested: u32,
    pub completed: u64,
    pub errors: Errors,
    pub target_rate: Option<f64>,
    pub handshakes_per_second: f64,
    pub handshake: LatencySummary,
    /// CPU per handshake of each process involved (the servers are those of `--server-pids`).
    pub cpu_per_handshake: CpuPerOperation,
}

/// Full handshakes (connect, JWT, PostgreSQL, rooms, hello), each socket closed right after.
pub async fn handshakes(
    t: &Targets,
    count: u32,
    rate: Option<f64>,
    concurrency: usize,
    server_pids: &[u32],
) -> anyhow::Result<HandshakeResult> {
    let cpu = CpuMeter::start(server_pids);
    // Open and drop in batches so file descriptors are recycled.
    let batch = 2000.min(count.max(1));
    let mut latency = Latency::default();
    let mut errors = Errors::default();
    let mut completed = 0;
    let mut elapsed = Duration::ZERO;
    let mut first = 0;
    while first < count {
        let n = batch.min(count - first);
        let opened = open_many(t, Kind::Driver, first, n, rate, concurrency).await?;
        elapsed += opened.elapsed;
        completed += opened.clients.len() as u64;
        latency.merge(&opened.latency);
        for (k, v) in opened.errors.0 {
            *errors.0.entry(k).or_default() += v;
        }
        drop(opened.clients);
        first += n;
    }
    Ok(HandshakeResult {
        scenario: if rate.is_some() {
            "handshake-latency"
        } else {
            "handshake-throughput"
        },
        requested: count,
        completed,
        errors,
        target_rate: rate,
        handshakes_per_second: completed as f64 / elapsed.as_secs_f64(),
        handshake: latency.summary(),
        cpu_per_handshake: cpu.per_operation(completed),
    })
}

#[derive(Serialize)]
pub struct LocationResult {
    pub scenario: &'static str,
    pub drivers: usize,
    pub rate_per_driver: f64,
    /// Unanswered updates a driver may have before it skips a tick (closed loop, as apps do).
    pub window: usize,
    pub offered_per_second: f64,
    /// Ticks skipped because the window was full: the server was not keeping up.
    pub skipped: u64,
    pub accepted_per_second: f64,
    pub refused: BTreeMap<String, u64>,
    pub unanswered: u64,
    pub ack: LatencySummary,
    pub connect_errors: Errors,
    /// CPU per accepted update of each process involved, connecting excluded.
    pub cpu_per_update: CpuPerOperation,
}

/// Ack id of the `driver:status` a locations run starts with (reports count from 0; ack ids
/// must fit a signed 64-bit integer).
const ONLINE_ACK: u64 = 1 << 40;

/// Sets a driver ONLINE and waits for the answer.
async fn go_online(client: &mut Client) -> anyhow::Result<()> {
    anyhow::ensure!(
        client
            .emit_with_ack(ONLINE_ACK, "driver:status", r#"{"status":"ONLINE"}"#)
            .await,
        "a driver closed before going ONLINE"
    );
    match client.answer(ONLINE_ACK, Duration::from_secs(10)).await {
        Ok(args) if args.starts_with("[{\"ok\":true") => Ok(()),
        Ok(args) => anyhow::bail!("driver:status ONLINE refused: {args}"),
        Err(NoAnswer::TimedOut) => anyhow::bail!("no answer to driver:status ONLINE within 10 s"),
        Err(NoAnswer::Closed) => {
            anyhow::bail!("a driver closed before answering driver:status ONLINE")
        }
    }
}

/// Drivers send `driver:location` with acks at `rate` a second each, for `duration`, each with at
/// most `window` updates unanswered.
pub async fn locations(
    t: &Targets,
    drivers: u32,
    rate: f64,
    window: usize,
    duration: Duration,
    server_pids: &[u32],
) -> anyhow::Result<LocationResult> {
    let mut opened = open_many(t, Kind::Driver, 0, drivers, None, 500).await?;
    let connected = opened.clients.len();
    // ONLINE first, so that each report also moves the driver in the geo index, as in service.
    let online = opened
        .clients
        .iter_mut()
        .map(|(_, client)| go_online(client));
    futures::future::try_join_all(online).await?;
    let cpu = CpuMeter::start(server_pids);
    let mut tasks = JoinSet::new();
    for (i, mut client) in opened.clients {
        tasks.spawn(async move {
            let mut latency = Latency::default();
            let mut refused: BTreeMap<String, u64> = BTreeMap::new();
            let mut sent: HashMap<u64, Instant> = HashMap::new();
            let mut accepted = 0u64;
            let mut skipped = 0u64;
            let period = Duration::from_secs_f64(1.0 / rate);
            // Spread drivers over the period instead of sending in lockstep.
            let offset = period.mul_f64(f64::from(i % 1000) / 1000.0);
            let mut ticker = tokio::time::interval_at((Instant::now() + offset).into(), period);
            let end = Instant::now() + offset + duration;
            let mut next_id = 0u64;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        if Instant::now() >= end { break; }
                        if sent.len() >= window {
                            skipped += 1;
                            continue;
                        }
                        let lat = 10.0 + f64::from(i % 70) + (next_id % 1000) as f64 / 1e4;
                        let data = format!("{{\"lat\":{lat},\"lng\":20.5,\"heading\":90,\"speed\":10}}");
                        sent.insert(next_id, Instant::now());
                        if !client.emit_with_ack(next_id, "driver:location", &data).await { break; }
                        next_id += 1;
                    }
                    heard = client.incoming.recv() => match heard {
                        Some(Incoming::Ack { id, args }) => {
                            if let Some(at) = sent.remove(&id) {
                                latency.record(at.elapsed().as_micros() as u64);
                                if args.starts_with("[{\"ok\":true") {
                                    accepted += 1;
                                } else {
                                    let code = serde_json::from_str::<Value>(&args).ok()
                                        .and_then(|v| v[0]["error"]["code"].as_str().map(str::to_owned))
                                        .unwrap_or_else(|| "malformed".into());
                                    *refused.entry(code).or_default() += 1;
                                }
                            }
                        }
                        Some(Incoming::Closed) | None => break,
                        Some(_) => {}
                    }
                }
            }
            // Collect the acks still in flight.
            let drain_until = Instant::now() + Duration::from_secs(2);
            while !sent.is_empty() {
                match tokio::time::timeout_at(drain_until.into(), client.incoming.recv()).await {
                    Ok(Some(Incoming::Ack { id, args })) => {
                        if let Some(at) = sent.remove(&id) {
                            latency.record(at.elapsed().as_micros() as u64);
                            if args.starts_with("[{\"ok\":true") { accepted += 1; }
                        }
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            (latency, refused, accepted, sent.len() as u64, skipped)
        });
    }
    let mut latency = Latency::default();
    let mut refused = BTreeMap::new();
    let (mut accepted, mut unanswered, mut skipped) = (0, 0, 0);
    while let Some(done) = tasks.join_next().await {
        let (l, r, a, u, s) = done?;
        skipped += s;
        latency.merge(&l);
        for (k, v) in r {
            *refused.entry(k).or_default() += v;
        }
        accepted += a;
        unanswered += u;
    }
    Ok(LocationResult {
        scenario: "locations",
        drivers: connected,
        rate_per_driver: rate,
        window,
        offered_per_second: connected as f64 * rate,
        skipped,
        accepted_per_second: accepted as f64 / duration.as_secs_f64(),
        refused,
        unanswered,
        ack: latency.summary(),
        connect_errors: opened.errors,
        cpu_per_update: cpu.per_operation(accepted),
    })
}

fn http() -> HttpClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    HttpClient::builder(TokioExecutor::new()).build_http()
}

async fn post(
    client: &HttpClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<u16> {
    let request = hyper::Request::post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = client.request(request).await.context("internal API")?;
    if !response.status().is_success() {
        eprintln!("internal API answered {} for {url}", response.status());
    }
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[derive(Serialize)]
pub struct FanoutResult {
    pub scenario: &'static str,
    pub receivers: usize,
    pub emits_per_second: f64,
    pub rooms_per_emit: u32,
    pub expected: u64,
    pub delivered: u64,
    pub delivered_per_second: f64,
    pub emit_errors: u64,
    pub latency: LatencySummary,
    /// CPU per delivered message of each process involved, connecting excluded.
    pub cpu_per_message: CpuPerOperation,
}

/// What the fan-out scenario pushes: `rate` emits a second, each to `rooms_per_emit` rooms.
pub struct Pushes {
    pub rate: f64,
    pub rooms_per_emit: u32,
    pub duration: Duration,
}

/// Pushes through one replica's internal API to passengers connected to the others, at a fixed
/// rate; each receiver measures the time from send to delivery (same machine clock).
pub async fn fanout(
    t: &Targets,
    receivers: u32,
    emit_url: &str,
    internal_token: &str,
    pushes: Pushes,
    server_pids: &[u32],
) -> anyhow::Result<FanoutResult> {
    let Pushes {
        rate,
        rooms_per_emit,
        duration,
    } = pushes;
    let opened = open_many(t, Kind::Passenger, 0, receivers, None, 500).await?;
    let connected = opened.clients.len() as u32;
    let mut listeners = JoinSet::new();
    let stop = Arc::new(tokio::sync::Notify::new());
    let ids: Vec<u32> = opened.clients.iter().map(|(i, _)| *i).collect();
    for (_, client) in opened.clients {
        let stop = stop.clone();
        listeners.spawn(async move {
            // Own the whole client: capturing only `incoming` would drop the sender and close it.
            let mut client = client;
            let mut latency = Latency::default();
            loop {
                tokio::select! {
                    heard = client.incoming.recv() => match heard {
                        Some(Incoming::Event { raw }) if raw.starts_with("[\"bench:fanout\"") => {
                            let sent = serde_json::from_str::<Value>(&raw).ok()
                                .and_then(|v| v[1]["t"].as_u64()).unwrap_or(0);
                            latency.record(unix_micros().saturating_sub(sent));
                        }
                        Some(Incoming::Closed) | None => break,
                        Some(_) => {}
                    },
                    () = stop.notified() => break,
                }
            }
            latency
        });
    }
    let http = http();
    let emit_url = format!("{emit_url}/internal/v1/emit");
    let cpu = CpuMeter::start(server_pids);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let (mut emits, mut expected, mut emit_errors) = (0u64, 0u64, 0u64);
    let mut cursor = 0usize;
    let mut inflight = JoinSet::new();
    while started.elapsed() < duration {
        ticker.tick().await;
        let rooms: Vec<String> = (0..rooms_per_emit.min(connected))
            .map(|_| {
                cursor = (cursor + 1) % ids.len().max(1);
                format!(
                    "passenger:{}",
                    identities::user_id(Kind::Passenger, ids[cursor])
                )
            })
            .collect();
        expected += rooms.len() as u64;
        let body = json!({ "namespace": "/passengers", "rooms": rooms, "event": "bench:fanout", "data": { "t": unix_micros() } });
        let (http, url, token) = (http.clone(), emit_url.clone(), internal_token.to_owned());
        inflight.spawn(async move { post(&http, &url, &token, &body).await });
        emits += 1;
        while let Some(done) = inflight.try_join_next() {
            if !matches!(done, Ok(Ok(200))) {
                emit_errors += 1;
            }
        }
    }
    while let Some(done) = inflight.join_next().await {
        if !matches!(done, Ok(Ok(200))) {
            emit_errors += 1;
        }
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.notify_waiters();
    let mut latency = Latency::default();
    while let Some(done) = listeners.join_next().await {
        latency.merge(&done?);
    }
    let delivered = latency.summary().count;
    let cpu_per_message = cpu.per_operation(delivered);
    Ok(FanoutResult {
        scenario: "fanout",
        receivers: connected as usize,
        emits_per_second: emits as f64 / elapsed.as_secs_f64(),
        rooms_per_emit,
        expected,
        delivered,
        delivered_per_second: delivered as f64 / elapsed.as_secs_f64(),
        emit_errors,
        latency: latency.summary(),
        cpu_per_message,
    })
}

#[derive(Serialize)]
pub struct RevocationResult {
    pub scenario: &'static str,
    pub connected: usize,
    pub revoked: u64,
    pub disconnects_seen: u64,
    pub request_errors: u64,
    pub rate: f64,
    pub latency: LatencySummary,
    pub connect_errors: Errors,
}

/// With `sockets` drivers connected, revokes `revocations` of their sessions through one
/// replica's internal API at `rate`, measuring the time until the driver's client sees the
/// server's disconnect.
pub async fn revocations(
    t: &Targets,
    sockets: u32,
    revocations: u32,
    revoke_base: &str,
    internal_token: &str,
    rate: f64,
) -> anyhow::Result<RevocationResult> {
    let opened = open_many(t, Kind::Driver, 0, sockets, None, 1000).await?;
    let connected = opened.clients.len();
    let mut clients: HashMap<u32, Client> = opened.clients.into_iter().collect();
    let targets: Vec<u32> = (0..sockets)
        .filter(|i| clients.contains_key(i))
        .step_by((sockets / revocations.max(1)).max(1) as usize)
        .take(revocations as usize)
        .collect();
    let http = http();
    let mut tasks = JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    for i in &targets {
        ticker.tick().await;
        let Some(client) = clients.remove(i) else {
            continue;
        };
        let url = format!(
            "{revoke_base}/internal/v1/sessions/{}/revoke",
            identities::session_id(Kind::Driver, *i)
        );
        let body =
            json!({ "userId": identities::user_id(Kind::Driver, *i), "reason": "load-test" });
        let (http, token) = (http.clone(), internal_token.to_owned());
        tasks.spawn(async move {
            // Own the whole client: capturing only `incoming` would drop the sender and close it.
            let mut client = client;
            let started = Instant::now();
            let request = post(&http, &url, &token, &body);
            let seen = async {
                loop {
                    match client.incoming.recv().await {
                        Some(Incoming::Disconnected) => return Some(started.elapsed()),
                        Some(Incoming::Closed) | None => return None,
                        Some(_) => {}
                    }
                }
            };
            let (status, seen) =
                tokio::join!(request, tokio::time::timeout(Duration::from_secs(10), seen));
            (matches!(status, Ok(200)), seen.ok().flatten())
        });
    }
    let mut latency = Latency::default();
    let (mut seen, mut request_errors) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (ok, disconnect) = done?;
        if !ok {
            request_errors += 1;
        }
        if let Some(d) = disconnect {
            seen += 1;
            latency.record(d.as_micros() as u64);
        }
    }
    drop(clients);
    Ok(RevocationResult {
        scenario: "revocation",
        connected,
        revoked: targets.len() as u64,
        disconnects_seen: seen,
        request_errors,
        rate,
        latency: latency.summary(),
        connect_errors: opened.errors,
    })
}

/// Raises this process's open-file limit to the hard limit (each connection is one).
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024)
}
