//! The command line: subcommands and one flag per setting (same meaning as the variable).

use std::collections::HashMap;

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about = "Realtime Socket.IO gateway of the ride-hailing platform"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: SettingFlags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one replica (the default).
    Serve,
    /// Create the database if missing and apply the schema (idempotent).
    Migrate,
    /// Print an HS256 access token for an existing user and session (development).
    Token(TokenArgs),
    /// Ask this host's replica whether it is alive (container health checks): exits 0 when
    /// `GET <path>` on the internal listener answers 200, 1 otherwise.
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The probe to ask: `/livez` (alive) or `/readyz` (can serve).
    #[arg(long, default_value = "/livez")]
    pub path: String,
    /// How long to wait for the answer.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Ask this URL instead (another host: a Helm test pod, a compose health check of `/readyz`).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user's id (`users.id`).
    #[arg(long)]
    pub user: Uuid,
    /// The session's `jti` (the token's `sid` claim).
    #[arg(long)]
    pub sid: String,
    /// Lifetime of the token.
    #[arg(long, default_value_t = 3600)]
    pub ttl_secs: u64,
}

/// Every setting as a flag; unset flags fall back to the environment variable.
#[derive(Debug, Args, Default)]
pub struct SettingFlags {
    #[arg(long, global = true, value_name = "HOST:PORT")]
    bind_addr: Option<String>,
    #[arg(long, global = true, value_name = "HOST:PORT")]
    internal_bind_addr: Option<String>,
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[arg(long, global = true, value_name = "URL")]
    redis_url: Option<String>,
    #[arg(long, global = true)]
    redis_prefix: Option<String>,
    #[arg(long, global = true)]
    jwt_secret: Option<String>,
    #[arg(long, global = true)]
    jwt_issuer: Option<String>,
    #[arg(long, global = true)]
    jwt_audience: Option<String>,
    #[arg(long, global = true)]
    internal_api_token: Option<String>,
    #[arg(long, global = true)]
    node_id: Option<String>,
    #[arg(long, global = true)]
    node_ttl_ms: Option<String>,
    #[arg(long, global = true)]
    max_payload_bytes: Option<String>,
    #[arg(long, global = true)]
    ping_interval_ms: Option<String>,
    #[arg(long, global = true)]
    ping_timeout_ms: Option<String>,
    #[arg(long, global = true)]
    shutdown_grace_ms: Option<String>,
    #[arg(long, global = true)]
    location_rate_per_s: Option<String>,
    #[arg(long, global = true)]
    presence_grace_ms: Option<String>,
    #[arg(long, global = true)]
    trip_ttl_s: Option<String>,
    #[arg(long, global = true)]
    location_stream_maxlen: Option<String>,
    #[arg(long, global = true, value_name = "FILTER")]
    rust_log: Option<String>,
    #[arg(long, global = true, value_name = "json|pretty")]
    log_format: Option<String>,
}

impl SettingFlags {
    /// The flags that were given, keyed by the variable of the same meaning.
    pub fn into_map(self) -> HashMap<&'static str, String> {
        [
            ("BIND_ADDR", self.bind_addr),
            ("INTERNAL_BIND_ADDR", self.internal_bind_addr),
            ("DATABASE_URL", self.database_url),
            ("REDIS_URL", self.redis_url),
            ("REDIS_PREFIX", self.redis_prefix),
            ("JWT_SECRET", self.jwt_secret),
            ("JWT_ISSUER", self.jwt_issuer),
            ("JWT_AUDIENCE", self.jwt_audience),
            ("INTERNAL_API_TOKEN", self.internal_api_token),
            ("NODE_ID", self.node_id),
            ("NODE_TTL_MS", self.node_ttl_ms),
            ("MAX_PAYLOAD_BYTES", self.max_payload_bytes),
            ("PING_INTERVAL_MS", self.ping_interval_ms),
            ("PING_TIMEOUT_MS", self.ping_timeout_ms),
            ("SHUTDOWN_GRACE_MS", self.shutdown_grace_ms),
            ("LOCATION_RATE_PER_S", self.location_rate_per_s),
            ("PRESENCE_GRACE_MS", self.presence_grace_ms),
            ("TRIP_TTL_S", self.trip_ttl_s),
            ("LOCATION_STREAM_MAXLEN", self.location_stream_maxlen),
            ("RUST_LOG", self.rust_log),
            ("LOG_FORMAT", self.log_format),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }
}
