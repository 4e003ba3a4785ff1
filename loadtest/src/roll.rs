//! A rolling update, as clients feel it: `count` driver sockets spread over the replicas, one
//! replica sent SIGTERM (as Kubernetes does) or SIGKILL (a crash), and every client it drops
//! reconnecting at once to the next replica (the worst case: apps add a random delay), retrying
//! a refused attempt after a backoff as socket.io-client does. Measures when the replica let its
//! clients go, how long each took to be greeted elsewhere, how many attempts were refused (a
//! replica shedding load), the handshake latency during the roll, and the peak PostgreSQL query
//! rate it caused.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::{
    client::{self, Incoming},
    identities::{self, Kind},
    report::{Latency, LatencySummary},
    scenarios::{Errors, Targets, open_many},
};

#[derive(Serialize)]
pub struct RollResult {
    pub scenario: &'static str,
    pub connected: usize,
    pub connect_errors: Errors,
    /// Sockets that were on the rolled replica.
    pub dropped: u64,
    /// Dropped before the SIGTERM was sent (should be none).
    pub closed_before_sigterm: u64,
    pub reconnected: u64,
    /// Attempts refused before a client got back (shed with `Service unavailable`, and so on).
    pub refused_attempts: Errors,
    /// Clients not back within the wait.
    pub failed: Errors,
    /// When the rolled replica closed each socket, from the SIGTERM.
    pub closed_after_sigterm: LatencySummary,
    /// From a socket's close to its `hello` on another replica.
    pub reconnect: LatencySummary,
    /// TCP connect to `hello` of those reconnects (the handshake during the roll).
    pub handshake: LatencySummary,
    /// Most reconnect handshakes in any 100 ms (as a rate per second), and in any second: each
    /// is one identity query, so this is the PostgreSQL query rate the roll caused.
    pub handshakes_peak_per_second_100ms: f64,
    pub handshakes_peak_in_one_second: usize,
    /// PostgreSQL transactions in the database from the SIGTERM until the last reconnect, all
    /// clients included (pg_stat_database; flushed by backends at most once a second, which is
    /// why the peak rate is taken from the handshakes above).
    pub db_queries: i64,
    pub roll_secs: f64,
}

#[derive(Default)]
struct Tally {
    closed_after_sigterm: Latency,
    reconnect: Latency,
    handshake: Latency,
    reconnected: u64,
    refused_attempts: Errors,
    failed: Errors,
    closed_before_sigterm: u64,
    /// When each reconnect was greeted, from the SIGTERM.
    greeted: Vec<Duration>,
}

/// Keeps a client open (its sender alive) until the server closes it.
async fn hold(mut client: client::Client) {
    while client.incoming.recv().await.is_some() {}
}

/// Transactions committed in this database so far (every identity query is one).
async fn commits(db: &tokio_postgres::Client) -> Result<i64, tokio_postgres::Error> {
    db.query_one(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        &[],
    )
    .await?
    .try_get(0)
}

/// The replica that goes away: its public listener, its process, and the signal it gets
/// (`TERM` or `KILL`).
pub struct Victim {
    pub addr: SocketAddr,
    pub pid: u32,
    pub signal: String,
}

pub async fn roll(
    t: &Targets,
    count: u32,
    concurrency: usize,
    victim: &Victim,
    wait: Duration,
    database_url: &str,
) -> anyhow::Result<RollResult> {
    let Victim {
        addr: victim,
        pid: victim_pid,
        signal,
    } = victim;
    let (victim, victim_pid) = (*victim, *victim_pid);
    let opened = open_many(t, Kind::Driver, 0, count, None, concurrency).await?;
    let connected = opened.clients.len();
    let others: Vec<SocketAddr> = t.servers.iter().copied().filter(|s| *s != victim).collect();
    anyhow::ensure!(
        !others.is_empty(),
        "--servers must name a replica besides the rolled one"
    );
    let (db, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    let sigterm_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut waiting = JoinSet::new();
    for (i, socket) in opened.clients {
        if t.server(i) != victim {
            // Kept open for the whole roll: the other replicas hold their clients.
            tokio::spawn(hold(socket));
            continue;
        }
        let token = identities::token(&t.jwt_secret, Kind::Driver, i)?;
        let (next, source) = (others[i as usize % others.len()], t.source(i));
        let (tally, sigterm_at) = (tally.clone(), sigterm_at.clone());
        waiting.spawn(async move {
            // The whole client, not just the field read below: dropping its sender closes it.
            let mut socket = socket;
            loop {
                match socket.incoming.recv().await {
                    Some(Incoming::Closed | Incoming::Disconnected) | None => break,
                    Some(_) => {}
                }
            }
            let closed = Instant::now();
            let since_sigterm = sigterm_at
                .get()
                .map(|at| closed.saturating_duration_since(*at));
            // Refused attempts are retried after a growing, randomised backoff (socket.io-client:
            // 1 s doubling to 5 s, randomised by half; shorter here to bound the run).
            let mut backoff = Duration::from_millis(250);
            let mut refused = Vec::new();
            let result = loop {
                match client::open(next, source, Kind::Driver.namespace(), &token).await {
                    Ok(opened) => break Ok(opened),
                    Err(error) if closed.elapsed() + backoff < wait => {
                        refused.push(error);
                        let jitter = u64::from(closed.elapsed().subsec_nanos()) % 1000;
                        tokio::time::sleep(backoff + backoff * jitter as u32 / 2000).await;
                        backoff = (backoff * 2).min(Duration::from_secs(4));
                    }
                    Err(error) => break Err(error),
                }
            };
            let mut tally = tally.lock().expect("tally");
            for error in &refused {
                tally.refused_attempts.add(error);
            }
            match since_sigterm {
                Some(after) => tally.closed_after_sigterm.record(after.as_micros() as u64),
                None => tally.closed_before_sigterm += 1,
            }
            match result {
                Ok((again, handshake)) => {
                    tally.reconnect.record(closed.elapsed().as_micros() as u64);
                    if let Some(at) = sigterm_at.get() {
                        tally.greeted.push(at.elapsed());
                    }
                    tally.handshake.record(handshake.as_micros() as u64);
                    tally.reconnected += 1;
                    // Held until the scenario ends, like the others.
                    tokio::spawn(hold(again));
                }
                Err(error) => tally.failed.add(&error),
            }
        });
    }
    let dropped = waiting.len() as u64;

    // PostgreSQL's commit counter, every 100 ms, from just before the SIGTERM.
    let samples = Arc::new(Mutex::new(Vec::<(Instant, i64)>::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                match commits(&db).await {
                    Ok(n) => samples.lock().expect("samples").push((Instant::now(), n)),
                    Err(error) => eprintln!("cannot sample PostgreSQL: {error}"),
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = sigterm_at.set(Instant::now());
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &victim_pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "cannot send SIG{signal} to {victim_pid}");
    let started = Instant::now();
    let all_back = async { while waiting.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(wait, all_back).await;
    let roll_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sampler.abort();

    let samples = samples.lock().expect("samples").clone();
    let db_queries = match (samples.first(), samples.last()) {
        (Some(first), Some(last)) => last.1 - first.1,
        _ => 0,
    };
    let mut tally = tally.lock().expect("tally");
    let failed = std::mem::take(&mut tally.failed);
    let refused_attempts = std::mem::take(&mut tally.refused_attempts);
    tally.greeted.sort();
    let most_within = |window: Duration| {
        let greeted = &tally.greeted;
        let mut first = 0;
        let mut most = 0;
        for last in 0..greeted.len() {
            while greeted[last] - greeted[first] >= window {
                first += 1;
            }
            most = most.max(last - first + 1);
        }
        most
    };
    let peak_100ms = most_within(Duration::from_millis(100)) as f64 * 10.0;
    let peak_1s = most_within(Duration::from_secs(1));
    Ok(RollResult {
        scenario: "roll",
        connected,
        connect_errors: opened.errors,
        dropped,
        closed_before_sigterm: tally.closed_before_sigterm,
        reconnected: tally.reconnected,
        refused_attempts,
        failed,
        closed_after_sigterm: tally.closed_after_sigterm.summary(),
        reconnect: tally.reconnect.summary(),
        handshake: tally.handshake.summary(),
        handshakes_peak_per_second_100ms: peak_100ms,
        handshakes_peak_in_one_second: peak_1s,
        db_queries,
        roll_secs,
    })
}
