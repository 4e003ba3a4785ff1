//! Typed settings of every subcommand, read from CLI flags and environment variables and
//! validated before anything binds or connects.
//!
//! Settings are read through a [`Source`], never straight from the process environment, so
//! tests can hand in their own values. A secret is held as a [`Secret`], whose `Debug` never
//! shows it; connection URLs are never echoed in errors either (they may carry passwords).

use std::{collections::HashMap, fmt, net::SocketAddr, str::FromStr, time::Duration};

use crate::settings::{self, Fallback, Setting};

/// Looks a variable up (the process environment, or a test's map).
type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// Where setting values come from: a flag wins over the variable of the same meaning.
pub struct Source {
    flags: HashMap<&'static str, String>,
    env: Lookup,
}

impl Source {
    /// Flags given on the command line (keyed by variable name) over the process environment.
    pub fn from_process(flags: HashMap<&'static str, String>) -> Self {
        Self {
            flags,
            env: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// Fixed values only: for tests, which never mutate the process environment.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let map: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self {
            flags: HashMap::new(),
            env: Box::new(move |name| map.get(name).cloned()),
        }
    }

    /// The value of `name`; an empty value counts as unset.
    fn get(&self, name: &str) -> Option<String> {
        self.flags
            .get(name)
            .cloned()
            .or_else(|| (self.env)(name))
            .filter(|v| !v.trim().is_empty())
    }

    /// A secret: its variable, or the contents of the file `{name}_FILE` names (as containers
    /// mount secrets; a value in a flag or the environment shows in `ps` and `/proc`). One
    /// trailing newline is ignored. The contents are never echoed.
    fn secret(&self, setting: &'static Setting) -> Result<Option<String>, ConfigError> {
        let name = setting.name;
        let path = setting
            .file
            .and_then(|file| self.get(file).map(|path| (file, path)));
        match (self.get(name), path) {
            (Some(_), Some((file, _))) => Err(ConfigError {
                name: file,
                problem: format!("and {name} are both set; set one"),
            }),
            (None, None) => Ok(default_text(setting).map(str::to_owned)),
            (value, None) => Ok(value),
            (None, Some((file, path))) => {
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
                    name: file,
                    problem: format!("cannot read {path}: {}", e.kind()),
                })?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                Ok(Some(text.to_owned()).filter(|t| !t.trim().is_empty()))
            }
        }
    }

    fn required_secret(&self, setting: &'static Setting) -> Result<String, ConfigError> {
        self.secret(setting)?.ok_or(ConfigError {
            name: setting.name,
            problem: "is required and not set".into(),
        })
    }

    /// The setting's value, or its default value from the table; `None` when neither.
    fn value(&self, setting: &Setting) -> Option<String> {
        self.get(setting.name)
            .or_else(|| default_text(setting).map(str::to_owned))
    }

    /// The setting parsed; `None` when it is unset and has no default value.
    fn parsed_opt<T: FromStr>(
        &self,
        setting: &'static Setting,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.value(setting)
            .map(|raw| {
                raw.trim().parse().map_err(|_| ConfigError {
                    name: setting.name,
                    problem: format!("expected {expected}, got {raw:?}"),
                })
            })
            .transpose()
    }

    /// The setting parsed, falling back on its default value from the table.
    fn parsed<T: FromStr>(
        &self,
        setting: &'static Setting,
        expected: &str,
    ) -> Result<T, ConfigError> {
        self.parsed_opt(setting, expected)?.ok_or(ConfigError {
            name: setting.name,
            problem: "is required and not set".into(),
        })
    }

    fn millis(&self, setting: &'static Setting) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parsed(setting, "a positive number of milliseconds")?;
        if ms == 0 {
            return Err(ConfigError {
                name: setting.name,
                problem: "must be greater than 0".into(),
            });
        }
        Ok(Duration::from_millis(ms))
    }
}

/// The default value the table gives a setting, if it gives one.
fn default_text(setting: &Setting) -> Option<&'static str> {
    match setting.default {
        Fallback::Value(v) => Some(v),
        Fallback::Derived(_) | Fallback::Unset | Fallback::Required => None,
    }
}

/// A setting that is missing or malformed: `main` prints it as one line and exits 64.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {name} {problem}")]
pub struct ConfigError {
    /// The variable's name (its flag has the same meaning).
    pub name: &'static str,
    pub problem: String,
}

/// A value that must never reach a log line, an error or a trace.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// How access tokens are verified (and minted by `gateway token`).
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// HS256 key shared with the auth service.
    pub secret: Secret,
    /// Checked against `iss` only when set.
    pub issuer: Option<String>,
    /// Checked against `aud` only when set; otherwise an `aud` claim is ignored.
    pub audience: Option<String>,
}

impl JwtSettings {
    pub fn load(src: &Source) -> Result<Self, ConfigError> {
        Ok(Self {
            secret: Secret::new(src.required_secret(&settings::JWT_SECRET)?),
            issuer: src.value(&settings::JWT_ISSUER),
            audience: src.value(&settings::JWT_AUDIENCE),
        })
    }
}

/// Where PostgreSQL is. Held as a secret: the URL may carry a password.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: Secret,
}

impl DatabaseSettings {
    pub fn load(src: &Source) -> Result<Self, ConfigError> {
        let url = src.required_secret(&settings::DATABASE_URL)?;
        // Parse now so a typo is a start-up error, not a readiness failure an hour later.
        tokio_postgres::Config::from_str(&url).map_err(|_| ConfigError {
            name: settings::DATABASE_URL.name,
            problem: "is not a valid postgres:// URL".into(),
        })?;
        Ok(Self {
            url: Secret::new(url),
        })
    }
}

/// How the gateway reaches Redis, read from `REDIS_URL`'s scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisTopology {
    /// One Redis (`redis://`, `rediss://` with TLS).
    Single,
    /// A Redis Cluster (`redis-cluster://`, `rediss-cluster://`): sharded pub/sub, state spread
    /// over the masters by hash tags.
    Cluster,
}

/// The topology a Redis URL names, or why it cannot be used (never echoing the URL: it may hold
/// a password).
pub fn redis_topology(url: &str) -> Result<RedisTopology, &'static str> {
    let scheme = url.split("://").next().unwrap_or_default();
    let topology = match scheme {
        "redis" | "rediss" => RedisTopology::Single,
        "redis-cluster" | "rediss-cluster" => RedisTopology::Cluster,
        "redis-sentinel" | "rediss-sentinel" => {
            return Err(
                "names Redis Sentinel, which is not supported: use one Redis \
                        (redis://, rediss://) or a Redis Cluster (redis-cluster://, rediss-cluster://)",
            );
        }
        _ => {
            return Err(
                "is not a Redis URL: redis://, rediss://, redis-cluster:// or \
                        rediss-cluster://",
            );
        }
    };
    if !url.contains("://") || fred::prelude::Config::from_url(url).is_err() {
        return Err(
            "is not a valid Redis URL: [user:password@]host[:port], and for a cluster \
                    ?node=host:port&node=host:port",
        );
    }
    Ok(topology)
}

/// Cluster mode: where Redis is and how this cluster's keys and channels are named.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// May carry a password, hence a secret.
    pub url: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// An `EnvFilter` directive (`RUST_LOG`).
    pub filter: String,
    pub format: LogFormat,
}

impl LogSettings {
    pub fn load(src: &Source) -> Result<Self, ConfigError> {
        let filter = src.parsed::<String>(&settings::RUST_LOG, "a log filter")?;
        if tracing_subscriber::EnvFilter::try_new(&filter).is_err() {
            return Err(ConfigError {
                name: settings::RUST_LOG.name,
                problem: format!("is not a valid log filter: {filter:?}"),
            });
        }
        let format = match src.value(&settings::LOG_FORMAT).as_deref().map(str::trim) {
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError {
                    name: settings::LOG_FORMAT.name,
                    problem: format!("expected json or pretty, got {other:?}"),
                });
            }
        };
        Ok(Self { filter, format })
    }
}

/// What `gateway probe` needs: where this host's internal listener is.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// `INTERNAL_BIND_ADDR`, with an unspecified host (`0.0.0.0`, `[::]`) made loopback.
    pub internal_addr: SocketAddr,
}

impl ProbeSettings {
    pub fn load(src: &Source) -> Result<Self, ConfigError> {
        let mut internal_addr: SocketAddr =
            src.parsed(&settings::INTERNAL_BIND_ADDR, "host:port")?;
        if internal_addr.ip().is_unspecified() {
            internal_addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(Self { internal_addr })
    }
}

/// The OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    Grpc,
}

/// Whether and how traces are exported. Only the standard `OTEL_*` variables configure export;
/// the exporter and the SDK read the rest of them (headers, timeout, sampler, resource, batch)
/// themselves. The endpoint itself is never kept here nor echoed (it may carry credentials).
#[derive(Debug, Clone)]
pub struct TraceSettings {
    pub protocol: OtlpProtocol,
    /// `service.instance.id` of every span.
    pub node_id: String,
    /// Neither `OTEL_SERVICE_NAME` nor a `service.name` in `OTEL_RESOURCE_ATTRIBUTES`: the
    /// service is called `gateway`.
    pub default_service_name: bool,
}

impl TraceSettings {
    pub fn load(src: &Source, node_id: &str) -> Result<Option<Self>, ConfigError> {
        let endpoint = [
            &settings::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
            &settings::OTEL_EXPORTER_OTLP_ENDPOINT,
        ]
        .into_iter()
        .find_map(|s| src.get(s.name).map(|value| (s.name, value)));
        let Some((name, endpoint)) = endpoint else {
            return Ok(None);
        };
        if !endpoint.trim().starts_with("http://") {
            return Err(ConfigError {
                name,
                problem: "must be an http:// URL (TLS to the collector is not built: export to a \
                          collector on the node or in the cluster)"
                    .into(),
            });
        }
        let protocol = [
            &settings::OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
            &settings::OTEL_EXPORTER_OTLP_PROTOCOL,
        ]
        .into_iter()
        .find_map(|s| src.get(s.name).map(|value| (s.name, value)));
        let protocol = match protocol {
            None => OtlpProtocol::HttpProtobuf,
            Some((_, p)) if p.trim() == "http/protobuf" => OtlpProtocol::HttpProtobuf,
            Some((_, p)) if p.trim() == "grpc" => OtlpProtocol::Grpc,
            Some((name, other)) => {
                return Err(ConfigError {
                    name,
                    problem: format!("expected http/protobuf or grpc, got {other:?}"),
                });
            }
        };
        let default_service_name = src.get(settings::OTEL_SERVICE_NAME.name).is_none()
            && !src
                .get(settings::OTEL_RESOURCE_ATTRIBUTES.name)
                .is_some_and(|attrs| {
                    attrs
                        .split(',')
                        .any(|kv| kv.trim().starts_with("service.name="))
                });
        Ok(Some(Self {
            protocol,
            node_id: node_id.to_owned(),
            default_service_name,
        }))
    }
}

/// Everything `gateway serve` needs.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Public listener: Socket.IO and `/healthz`.
    pub bind_addr: SocketAddr,
    /// Internal listener: `/internal/v1/*`, `/livez`, `/readyz`. Never exposed publicly.
    pub internal_bind_addr: SocketAddr,
    pub database: DatabaseSettings,
    /// `None`: a single replica with the in-memory adapter.
    pub redis: Option<RedisSettings>,
    /// Prefix of every Redis key and channel, so clusters sharing one Redis stay apart.
    pub redis_prefix: String,
    pub jwt: JwtSettings,
    /// Bearer token of the internal API.
    pub internal_api_token: Secret,
    /// This replica's unique name in logs and cluster state.
    pub node_id: String,
    /// This replica's lease in Redis (used by presence and stats).
    pub node_ttl: Duration,
    /// Largest Engine.IO payload on either transport.
    pub max_payload_bytes: u64,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Bound on the SIGTERM drain.
    pub shutdown_grace: Duration,
    /// Over how long the drain spreads its disconnects, so a replica's clients do not all
    /// reconnect (and hit PostgreSQL) at the same moment. Shorter than `shutdown_grace`.
    pub drain_spread: Duration,
    /// Accept queue of the public listener (the kernel caps it at `net.core.somaxconn`): a burst
    /// of connects beyond it waits a second for a SYN retransmit.
    pub listen_backlog: u32,
    /// Browser origins allowed to open sockets (`CORS_ORIGINS`).
    pub cors_origins: crate::origins::Origins,
    /// Connections the public listener holds at once; `None`: derived from the open-file limit
    /// at start-up.
    pub max_connections: Option<usize>,
    /// How long a connection may take to send a request head (and may idle between requests).
    pub header_read_timeout: Duration,
    /// `driver:location` updates accepted per driver per second; the excess is RATE_LIMITED.
    pub location_rate_per_s: u32,
    /// How long a driver with no socket anywhere keeps their status before turning OFFLINE.
    pub presence_grace: Duration,
    /// How long the gateway remembers a trip's status and driver.
    pub trip_ttl: Duration,
    /// Approximate cap of the `{prefix}:driver-locations` stream (0: no stream).
    pub location_stream_maxlen: u64,
    /// Missed-event recovery (`docs/spec/recovery.md`).
    pub recovery: RecoverySettings,
    /// What happens to a socket after its handshake (`docs/spec/lifecycle.md`).
    pub lifetime: LifetimeSettings,
    /// OTLP trace export; `None` when no endpoint is set (nothing exported).
    pub traces: Option<TraceSettings>,
    pub log: LogSettings,
}

impl ServeSettings {
    pub fn load(src: &Source) -> Result<Self, ConfigError> {
        // Checked in this order: of several bad settings, the first is named.
        let redis = RedisSettings::load(src)?;
        let redis_prefix = redis_prefix(src)?;
        let node_id = node_id(src);
        let max_payload_bytes = max_payload_bytes(src)?;
        let shutdown_grace = src.millis(&settings::SHUTDOWN_GRACE_MS)?;
        let drain_spread = drain_spread(src, shutdown_grace)?;
        Ok(Self {
            bind_addr: src.parsed(&settings::BIND_ADDR, "host:port")?,
            internal_bind_addr: src.parsed(&settings::INTERNAL_BIND_ADDR, "host:port")?,
            database: DatabaseSettings::load(src)?,
            redis,
            redis_prefix,
            jwt: JwtSettings::load(src)?,
            internal_api_token: Secret::new(src.required_secret(&settings::INTERNAL_API_TOKEN)?),
            node_id: node_id.clone(),
            node_ttl: src.millis(&settings::NODE_TTL_MS)?,
            max_payload_bytes,
            ping_interval: src.millis(&settings::PING_INTERVAL_MS)?,
            ping_timeout: src.millis(&settings::PING_TIMEOUT_MS)?,
            shutdown_grace,
            drain_spread,
            listen_backlog: positive(src, &settings::LISTEN_BACKLOG)?,
            cors_origins: cors_origins(src)?,
            max_connections: max_connections(src)?,
            header_read_timeout: src.millis(&settings::HEADER_READ_TIMEOUT_MS)?,
            location_rate_per_s: positive(src, &settings::LOCATION_RATE_PER_S)?,
            presence_grace: src.millis(&settings::PRESENCE_GRACE_MS)?,
            trip_ttl: Duration::from_secs(positive(src, &settings::TRIP_TTL_S)?),
            location_stream_maxlen: src
                .parsed(&settings::LOCATION_STREAM_MAXLEN, "a number of entries")?,
            recovery: RecoverySettings::load(src)?,
            lifetime: LifetimeSettings::load(src)?,
            traces: TraceSettings::load(src, &node_id)?,
            log: LogSettings::load(src)?,
        })
    }
}

impl RedisSettings {
    /// `None` without `REDIS_URL`: a single replica.
    fn load(src: &Source) -> Result<Option<Self>, ConfigError> {
        let Some(url) = src.secret(&settings::REDIS_URL)? else {
            return Ok(None);
        };
        let url = url.trim();
        redis_topology(url).map_err(|problem| ConfigError {
            name: settings::REDIS_URL.name,
            problem: problem.into(),
        })?;
        Ok(Some(Self {
            url: Secret::new(url),
        }))
    }
}

impl RecoverySettings {
    fn load(src: &Source) -> Result<Self, ConfigError> {
        Ok(Self {
            window: Duration::from_millis(
                src.parsed(&settings::RECOVERY_WINDOW_MS, "a number of milliseconds")?,
            ),
            max_events: src.parsed(&settings::RECOVERY_MAX_EVENTS, "a number of events")?,
        })
    }
}

fn redis_prefix(src: &Source) -> Result<String, ConfigError> {
    let prefix: String = src.parsed(&settings::REDIS_PREFIX, "a prefix")?;
    // Braces would become the hash tag of every key (keys.rs), putting them all in one slot.
    if prefix
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '#' | '{' | '}'))
    {
        return Err(ConfigError {
            name: settings::REDIS_PREFIX.name,
            problem: "must not contain whitespace, '#', '{' or '}'".into(),
        });
    }
    Ok(prefix)
}

/// `NODE_ID`, else the host's name (a pod's name on Kubernetes), else `gateway`.
fn node_id(src: &Source) -> String {
    src.get(settings::NODE_ID.name)
        .or_else(|| src.get("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".into())
}

fn max_payload_bytes(src: &Source) -> Result<u64, ConfigError> {
    let bytes: u64 = src.parsed(&settings::MAX_PAYLOAD_BYTES, "a number of bytes")?;
    if bytes < 1024 {
        return Err(ConfigError {
            name: settings::MAX_PAYLOAD_BYTES.name,
            problem: "must be at least 1024".into(),
        });
    }
    Ok(bytes)
}

fn cors_origins(src: &Source) -> Result<crate::origins::Origins, ConfigError> {
    let raw: String = src.parsed(&settings::CORS_ORIGINS, "origins")?;
    crate::origins::Origins::parse(&raw).map_err(|problem| ConfigError {
        name: settings::CORS_ORIGINS.name,
        problem,
    })
}

fn max_connections(src: &Source) -> Result<Option<usize>, ConfigError> {
    match src.parsed_opt(&settings::MAX_CONNECTIONS, "a number of connections")? {
        Some(0) => Err(ConfigError {
            name: settings::MAX_CONNECTIONS.name,
            problem: "must be at least 1".into(),
        }),
        cap => Ok(cap),
    }
}

/// A session after its handshake: expiry, re-validation, per-user limits.
/// How long, and how many, events are kept per room; a zero window turns recovery off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoverySettings {
    pub window: Duration,
    pub max_events: usize,
}

impl RecoverySettings {
    pub fn enabled(&self) -> bool {
        !self.window.is_zero() && self.max_events > 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifetimeSettings {
    /// How long before its expiry a socket is warned (`auth:token_expiring`).
    pub refresh_lead: Duration,
    /// How often sessions are re-checked in PostgreSQL; `None`: never.
    pub revalidate_every: Option<Duration>,
    /// Sockets per user and namespace, cluster-wide; `0`: no limit.
    pub max_sockets_per_user: u32,
    /// Handshakes per user per `handshake_window`, cluster-wide; `0`: no limit.
    pub handshake_rate: u32,
    pub handshake_window: Duration,
    /// Handshakes in progress on this replica at most; more are refused at once.
    pub max_pending_handshakes: usize,
}

impl LifetimeSettings {
    pub fn load(src: &Source) -> Result<Self, ConfigError> {
        let count = "a number (0: off)";
        let revalidate_ms: u64 = src.parsed(&settings::SESSION_REVALIDATE_MS, count)?;
        Ok(Self {
            refresh_lead: Duration::from_millis(
                src.parsed(&settings::TOKEN_REFRESH_LEAD_MS, "a number of milliseconds")?,
            ),
            revalidate_every: (revalidate_ms > 0).then(|| Duration::from_millis(revalidate_ms)),
            max_sockets_per_user: src.parsed(&settings::MAX_SOCKETS_PER_USER, count)?,
            handshake_rate: src.parsed(&settings::HANDSHAKE_RATE_PER_USER, count)?,
            handshake_window: src.millis(&settings::HANDSHAKE_RATE_WINDOW_MS)?,
            max_pending_handshakes: positive(src, &settings::MAX_PENDING_HANDSHAKES)?,
        })
    }
}

/// `DRAIN_SPREAD_MS`: by default two fifths of the grace period (10 s of the default 25 s),
/// leaving the rest for the listeners to close; `0` disconnects everyone at once. It must end
/// before the grace period does.
fn drain_spread(src: &Source, grace: Duration) -> Result<Duration, ConfigError> {
    let default_ms = u64::try_from(grace.as_millis() * 2 / 5).unwrap_or(u64::MAX);
    let ms: u64 = src
        .parsed_opt(&settings::DRAIN_SPREAD_MS, "a number of milliseconds")?
        .unwrap_or(default_ms);
    let spread = Duration::from_millis(ms);
    if spread >= grace {
        return Err(ConfigError {
            name: settings::DRAIN_SPREAD_MS.name,
            problem: format!(
                "must be shorter than SHUTDOWN_GRACE_MS ({} ms)",
                grace.as_millis()
            ),
        });
    }
    Ok(spread)
}

/// A positive integer setting.
fn positive<T: FromStr + Default + PartialOrd>(
    src: &Source,
    setting: &'static Setting,
) -> Result<T, ConfigError> {
    let value = src.parsed(setting, "a positive integer")?;
    if value <= T::default() {
        return Err(ConfigError {
            name: setting.name,
            problem: "must be greater than 0".into(),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [(&str, &str); 2] = [("JWT_SECRET", "k"), ("INTERNAL_API_TOKEN", "t")];

    fn serve(extra: &[(&'static str, &'static str)]) -> Result<ServeSettings, ConfigError> {
        ServeSettings::load(&Source::from_pairs(
            REQUIRED.iter().chain(extra.iter()).copied(),
        ))
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = serve(&[("NODE_ID", "n1")]).expect("valid");
        assert_eq!(s.bind_addr.to_string(), "0.0.0.0:3000");
        assert_eq!(s.internal_bind_addr.to_string(), "0.0.0.0:9000");
        assert_eq!(
            s.database.url.expose(),
            "postgres://postgres@127.0.0.1:5432/gateway"
        );
        assert!(s.redis.is_none());
        assert_eq!(s.redis_prefix, "gateway");
        assert_eq!(s.node_ttl, Duration::from_secs(10));
        assert_eq!(s.max_payload_bytes, 100_000);
        assert_eq!(s.ping_interval, Duration::from_secs(25));
        assert_eq!(s.ping_timeout, Duration::from_secs(20));
        assert_eq!(s.shutdown_grace, Duration::from_secs(25));
        assert_eq!(s.drain_spread, Duration::from_secs(10));
        assert_eq!(s.listen_backlog, 4096);
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.location_rate_per_s, 10);
        assert_eq!(s.presence_grace, Duration::from_secs(30));
        assert_eq!(s.recovery.window, Duration::from_secs(120));
        assert_eq!(s.recovery.max_events, 100);
        assert!(s.recovery.enabled());
        assert_eq!(s.trip_ttl, Duration::from_secs(86_400));
        assert_eq!(
            s.lifetime,
            LifetimeSettings {
                refresh_lead: Duration::from_secs(60),
                revalidate_every: Some(Duration::from_secs(60)),
                max_sockets_per_user: 5,
                handshake_rate: 10,
                handshake_window: Duration::from_secs(10),
                max_pending_handshakes: 1024,
            }
        );
        assert_eq!(s.max_connections, None, "derived from the open-file limit");
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.cors_origins, crate::origins::Origins::Any);
        let off = serve(&[
            ("SESSION_REVALIDATE_MS", "0"),
            ("MAX_SOCKETS_PER_USER", "0"),
            ("HANDSHAKE_RATE_PER_USER", "0"),
        ])
        .expect("0 turns them off");
        assert_eq!(off.lifetime.revalidate_every, None);
        assert_eq!(off.lifetime.max_sockets_per_user, 0);
        assert_eq!(off.lifetime.handshake_rate, 0);
    }

    #[test]
    fn a_missing_required_secret_is_named() {
        let err = ServeSettings::load(&Source::from_pairs([("JWT_SECRET", "k")]))
            .expect_err("INTERNAL_API_TOKEN missing");
        assert_eq!(err.name, "INTERNAL_API_TOKEN");
        let err = ServeSettings::load(&Source::from_pairs([("INTERNAL_API_TOKEN", "t")]))
            .expect_err("JWT_SECRET missing");
        assert_eq!(err.name, "JWT_SECRET");
    }

    #[test]
    fn malformed_values_are_named_and_urls_are_not_echoed() {
        for (name, value) in [
            ("BIND_ADDR", "nope"),
            ("INTERNAL_BIND_ADDR", "1.2.3.4"),
            ("NODE_TTL_MS", "-5"),
            ("PING_INTERVAL_MS", "0"),
            ("MAX_PAYLOAD_BYTES", "lots"),
            ("LOG_FORMAT", "xml"),
            ("REDIS_PREFIX", "a b"),
            ("LOCATION_RATE_PER_S", "0"),
            ("PRESENCE_GRACE_MS", "soon"),
            ("TRIP_TTL_S", "-1"),
            ("LISTEN_BACKLOG", "0"),
            ("DRAIN_SPREAD_MS", "25000"),
            ("DRAIN_SPREAD_MS", "soon"),
            ("TOKEN_REFRESH_LEAD_MS", "-1"),
            ("SESSION_REVALIDATE_MS", "often"),
            ("MAX_SOCKETS_PER_USER", "-5"),
            ("HANDSHAKE_RATE_PER_USER", "1.5"),
            ("HANDSHAKE_RATE_WINDOW_MS", "0"),
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS", "many"),
            ("HEADER_READ_TIMEOUT_MS", "0"),
            ("MAX_PENDING_HANDSHAKES", "0"),
            ("CORS_ORIGINS", "ops.example.com"),
            ("CORS_ORIGINS", "https://ops.example.com/app"),
        ] {
            let err = serve(&[(name, value)]).expect_err(name);
            assert_eq!(err.name, name);
        }
        let err =
            serve(&[("DATABASE_URL", "postgres://u:hunter2@h:notaport/db")]).expect_err("bad url");
        assert_eq!(err.name, "DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"));
        let err = serve(&[("REDIS_URL", "ftp://u:hunter2@h")]).expect_err("bad url");
        assert_eq!(err.name, "REDIS_URL");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn redis_urls_name_one_redis_or_a_cluster() {
        use super::{RedisTopology::*, redis_topology};
        assert_eq!(redis_topology("redis://h:6379"), Ok(Single));
        assert_eq!(redis_topology("rediss://u:pw@h:6380/0"), Ok(Single));
        assert_eq!(
            redis_topology("redis-cluster://h1:7000?node=h2:7001&node=h3:7002"),
            Ok(Cluster)
        );
        assert_eq!(
            redis_topology("rediss-cluster://default:pw@h1:7000"),
            Ok(Cluster)
        );
        let sentinel = redis_topology("redis-sentinel://h:26379?sentinelServiceName=m");
        assert!(
            sentinel
                .expect_err("sentinel")
                .contains("Sentinel, which is not supported")
        );
        assert!(redis_topology("h:6379").is_err());
        assert!(redis_topology("redis://h:notaport").is_err());
        for bad in ["redis-cluster://pw@", "redis://a b"] {
            let err = serve(&[("REDIS_URL", bad)]).expect_err(bad);
            assert_eq!(err.name, "REDIS_URL");
        }
        let err = serve(&[("REDIS_PREFIX", "gw{1}")]).expect_err("braces");
        assert_eq!(err.name, "REDIS_PREFIX");
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let jwt = "jwt-secret-value-7f3a";
        let internal = "internal-token-value-91c2";
        let s = ServeSettings::load(&Source::from_pairs([
            ("JWT_SECRET", jwt),
            ("INTERNAL_API_TOKEN", internal),
            ("DATABASE_URL", "postgres://u:db-pw-4411@h/db"),
            ("REDIS_URL", "redis://default:redis-pw-2290@h:6379"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ]))
        .expect("valid");
        let shown = format!("{s:?}");
        for secret in [jwt, internal, "db-pw-4411", "redis-pw-2290"] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(shown.contains("[redacted]"));
        // The values are there, only hidden.
        assert_eq!(s.jwt.secret.expose(), jwt);
        assert_eq!(s.internal_api_token.expose(), internal);
    }

    #[test]
    fn secrets_may_come_from_files() {
        let dir = std::env::temp_dir().join(format!("gw-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let jwt = dir.join("jwt");
        std::fs::write(&jwt, "from-a-file\n").expect("write");
        let jwt_path = jwt.to_string_lossy().into_owned();
        let s = ServeSettings::load(&Source::from_pairs([
            ("JWT_SECRET_FILE", jwt_path.as_str()),
            ("INTERNAL_API_TOKEN", "t"),
        ]))
        .expect("valid");
        assert_eq!(
            s.jwt.secret.expose(),
            "from-a-file",
            "the trailing newline is not part of it"
        );

        let both = ServeSettings::load(&Source::from_pairs([
            ("JWT_SECRET_FILE", jwt_path.as_str()),
            ("JWT_SECRET", "x"),
            ("INTERNAL_API_TOKEN", "t"),
        ]))
        .expect_err("both");
        assert_eq!(both.name, "JWT_SECRET_FILE");
        let missing = ServeSettings::load(&Source::from_pairs([
            ("JWT_SECRET", "x"),
            ("INTERNAL_API_TOKEN_FILE", "/nonexistent/token"),
        ]))
        .expect_err("unreadable");
        assert_eq!(missing.name, "INTERNAL_API_TOKEN_FILE");
        assert!(missing.to_string().contains("/nonexistent/token"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_drain_spread_follows_the_grace_period() {
        let s = serve(&[("SHUTDOWN_GRACE_MS", "5000")]).expect("valid");
        assert_eq!(s.drain_spread, Duration::from_secs(2));
        let s = serve(&[("DRAIN_SPREAD_MS", "0")]).expect("valid: all at once");
        assert_eq!(s.drain_spread, Duration::ZERO);
        let err = serve(&[("SHUTDOWN_GRACE_MS", "5000"), ("DRAIN_SPREAD_MS", "6000")])
            .expect_err("longer than the grace");
        assert_eq!(err.name, "DRAIN_SPREAD_MS");
    }

    #[test]
    fn trace_export_follows_the_standard_variables() {
        assert!(
            serve(&[]).expect("valid").traces.is_none(),
            "no endpoint: nothing exported"
        );
        let t = serve(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("NODE_ID", "n7"),
        ])
        .expect("valid")
        .traces
        .expect("exported");
        assert_eq!(t.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(t.node_id, "n7");
        assert!(t.default_service_name);
        let t = serve(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=edge",
            ),
        ])
        .expect("valid")
        .traces
        .expect("exported");
        assert_eq!(t.protocol, OtlpProtocol::Grpc);
        assert!(!t.default_service_name);
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
        ] {
            let mut pairs = vec![(name, value)];
            if name != "OTEL_EXPORTER_OTLP_ENDPOINT" {
                pairs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"));
            }
            let err = serve(&pairs).expect_err(value);
            assert_eq!(err.name, name);
        }
    }

    #[test]
    fn flags_win_over_the_environment() {
        let src = Source {
            flags: HashMap::from([("NODE_ID", "from-flag".to_string())]),
            env: Box::new(|name| match name {
                "NODE_ID" => Some("from-env".into()),
                "JWT_SECRET" | "INTERNAL_API_TOKEN" => Some("x".into()),
                _ => None,
            }),
        };
        assert_eq!(
            ServeSettings::load(&src).expect("valid").node_id,
            "from-flag"
        );
    }

    /// The settings table and what the loaders read cannot drift apart: every variable a
    /// loader reads is in the table (or is a secret's file, or the host name), and every
    /// setting the gateway reads itself is read by some loader.
    #[test]
    fn the_loaders_read_exactly_the_settings_table() {
        let read = std::rc::Rc::new(std::cell::RefCell::new(std::collections::BTreeSet::new()));
        let seen = read.clone();
        let src = Source {
            flags: HashMap::new(),
            env: Box::new(move |name| {
                seen.borrow_mut().insert(name.to_owned());
                match name {
                    "JWT_SECRET" | "INTERNAL_API_TOKEN" => Some("x".into()),
                    "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://c:4318".into()),
                    _ => None,
                }
            }),
        };
        ServeSettings::load(&src).expect("valid");
        ProbeSettings::load(&src).expect("valid");
        let read = read.borrow();
        for name in read.iter() {
            let known = settings::named(name).is_some()
                || settings::ALL.iter().any(|s| s.file == Some(name.as_str()))
                || name == "HOSTNAME";
            assert!(known, "{name} is read but not in settings::ALL");
        }
        for setting in settings::ALL {
            let sdk_only = setting.kind == settings::Kind::Otel;
            assert!(
                sdk_only || read.contains(setting.name),
                "{} is in settings::ALL but no loader reads it",
                setting.name
            );
        }
    }

    #[test]
    fn every_default_value_parses() {
        // An empty source: every setting takes the table's default.
        let s = serve(&[]).expect("the defaults are valid");
        assert_eq!(s.listen_backlog, 4096);
        assert_eq!(s.log.filter, "info");
    }
}
