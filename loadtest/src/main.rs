//! `loadgen`: the gateway's load generator. Scenarios: `idle` (hold connections, memory per
//! connection), `handshakes` (throughput, or latency at a fixed rate), `locations`
//! (`driver:location` with acks), `fanout` (cross-replica delivery), `revocations` (time from a
//! revoke request to the client's disconnect), `roll` (a rolling update: one replica drained
//! under N clients), `fuzz` (mutated protocol packets while a control client checks the replica
//! keeps serving). `seed` creates the identities they use.
//! Each run prints one JSON result (and writes it with `--out`).

mod client;
mod fuzz;
mod identities;
mod report;
mod roll;
mod scenarios;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use identities::Kind;
use scenarios::Targets;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for the ride-hailing gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Replicas' public listeners, comma-separated (host:port).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:3000"
    )]
    servers: Vec<SocketAddr>,
    /// Spread connections over 127.0.0.1..=127.0.0.N (one source address runs out of ports).
    #[arg(long, global = true, default_value_t = 16)]
    source_ips: u8,
    #[arg(long, global = true, env = "JWT_SECRET", default_value = "")]
    jwt_secret: String,
    #[arg(long, global = true, env = "INTERNAL_API_TOKEN", default_value = "")]
    internal_token: String,
    /// Also write the JSON result here.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Create N drivers, passengers and admins with one session each (idempotent).
    Seed {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, default_value_t = 20_000)]
        drivers: u32,
        #[arg(long, default_value_t = 20_000)]
        passengers: u32,
        #[arg(long, default_value_t = 10)]
        admins: u32,
    },
    /// Open N driver sockets, hold them idle, report server memory growth per connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        count: u32,
        /// The first seeded driver to connect as: several processes (each capped near 20,000
        /// open files) hold distinct users on one replica.
        #[arg(long, default_value_t = 0)]
        first: u32,
        #[arg(long)]
        rate: Option<f64>,
        /// Server processes whose RSS is measured.
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
        #[arg(long, default_value_t = 3)]
        settle_secs: u64,
        #[arg(long, default_value_t = 0)]
        hold_secs: u64,
    },
    /// Full handshakes: as fast as possible (throughput) or at --rate (latency).
    Handshakes {
        #[arg(long, default_value_t = 10_000)]
        count: u32,
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Server processes whose CPU is accounted per handshake.
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
    },
    /// Drivers send driver:location with acks at --rate each.
    Locations {
        #[arg(long, default_value_t = 1_000)]
        drivers: u32,
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Unanswered updates per driver before it skips a tick.
        #[arg(long, default_value_t = 4)]
        window: usize,
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// Server processes whose CPU is accounted per update.
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
    },
    /// Push through one replica to passengers on the others.
    Fanout {
        #[arg(long, default_value_t = 1_000)]
        receivers: u32,
        /// Internal API base URL of the replica that emits (http://host:port).
        #[arg(long)]
        emit_url: String,
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        #[arg(long, default_value_t = 10)]
        rooms_per_emit: u32,
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// Server processes whose CPU is accounted per delivered message.
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
    },
    /// A rolling update: N drivers over --servers, SIGTERM to one replica, its clients
    /// reconnecting to the others; reconnect times and the peak PostgreSQL query rate.
    Roll {
        #[arg(long, default_value_t = 6_000)]
        count: u32,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// The public listener of the replica that is rolled (one of --servers).
        #[arg(long)]
        victim: SocketAddr,
        /// Its process, sent --signal once every socket is connected.
        #[arg(long)]
        victim_pid: u32,
        /// `TERM` (a rolling update: the replica drains) or `KILL` (a crash: every socket drops
        /// at once).
        #[arg(long, default_value = "TERM", value_parser = ["TERM", "KILL"])]
        signal: String,
        /// Longest wait for the dropped clients to be back.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Mutated Engine.IO/Socket.IO packets from --sessions raw sessions (seeded drivers
    /// 1..=--identities) to the first server while seeded driver 0 keeps asking for acks there;
    /// fails unless every ack came and a client still connects afterwards.
    Fuzz {
        #[arg(long, default_value_t = 4)]
        sessions: u32,
        #[arg(long, default_value_t = 5_000)]
        packets: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seeded drivers 1..=N the sessions take turns with.
        #[arg(long, default_value_t = 200)]
        identities: u32,
    },
    /// Revoke sessions through one replica while N sockets are connected.
    Revocations {
        #[arg(long, default_value_t = 10_000)]
        sockets: u32,
        #[arg(long, default_value_t = 500)]
        revocations: u32,
        /// Internal API base URL of the replica that receives the revocations.
        #[arg(long)]
        revoke_url: String,
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let fds = scenarios::raise_fd_limit();
    let t = Targets {
        servers: cli.servers.clone(),
        source_ips: cli.source_ips,
        jwt_secret: cli.jwt_secret.clone(),
    };
    let result = match cli.command {
        Command::Seed {
            database_url,
            drivers,
            passengers,
            admins,
        } => {
            identities::seed(&database_url, Kind::Driver, drivers).await?;
            identities::seed(&database_url, Kind::Passenger, passengers).await?;
            identities::seed(&database_url, Kind::Admin, admins).await?;
            serde_json::json!({ "seeded": { "drivers": drivers, "passengers": passengers, "admins": admins } })
        }
        Command::Idle {
            count,
            first,
            rate,
            server_pids,
            settle_secs,
            hold_secs,
        } => serde_json::to_value(
            scenarios::idle(
                &t,
                Kind::Driver,
                first..first.saturating_add(count),
                rate,
                &server_pids,
                Duration::from_secs(settle_secs),
                Duration::from_secs(hold_secs),
            )
            .await?,
        )?,
        Command::Roll {
            count,
            concurrency,
            victim,
            victim_pid,
            signal,
            wait_secs,
            database_url,
        } => serde_json::to_value(
            roll::roll(
                &t,
                count,
                concurrency,
                &roll::Victim {
                    addr: victim,
                    pid: victim_pid,
                    signal,
                },
                Duration::from_secs(wait_secs),
                &database_url,
            )
            .await?,
        )?,
        Command::Handshakes {
            count,
            rate,
            concurrency,
            server_pids,
        } => serde_json::to_value(
            scenarios::handshakes(&t, count, rate, concurrency, &server_pids).await?,
        )?,
        Command::Locations {
            drivers,
            rate,
            window,
            secs,
            server_pids,
        } => serde_json::to_value(
            scenarios::locations(
                &t,
                drivers,
                rate,
                window,
                Duration::from_secs(secs),
                &server_pids,
            )
            .await?,
        )?,
        Command::Fanout {
            receivers,
            emit_url,
            rate,
            rooms_per_emit,
            secs,
            server_pids,
        } => serde_json::to_value(
            scenarios::fanout(
                &t,
                receivers,
                &emit_url,
                &cli.internal_token,
                scenarios::Pushes {
                    rate,
                    rooms_per_emit,
                    duration: Duration::from_secs(secs),
                },
                &server_pids,
            )
            .await?,
        )?,
        Command::Fuzz {
            sessions,
            packets,
            seed,
            identities,
        } => {
            let result = fuzz::fuzz(&t, sessions, packets, seed, identities).await?;
            let passed = result.control.answered == result.control.asked && result.connects_after;
            let value = serde_json::to_value(&result)?;
            if !passed {
                println!("{}", serde_json::to_string_pretty(&value)?);
                anyhow::bail!("the replica stopped serving the control client under fuzzing");
            }
            value
        }
        Command::Revocations {
            sockets,
            revocations,
            revoke_url,
            rate,
        } => serde_json::to_value(
            scenarios::revocations(
                &t,
                sockets,
                revocations,
                &revoke_url,
                &cli.internal_token,
                rate,
            )
            .await?,
        )?,
    };
    let mut result = result;
    if let Some(obj) = result.as_object_mut() {
        obj.insert("fd_limit".into(), fds.into());
    }
    let text = serde_json::to_string_pretty(&result)?;
    println!("{text}");
    if let Some(path) = cli.out {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
