//! Every setting of the gateway, defined once. This table is the source of the command-line
//! flags ([`crate::cli`]), of the defaults [`crate::config`] parses, of the README's
//! configuration table (`gateway settings` prints it; a test keeps the README equal) and of the
//! names the Helm chart's `settings` map accepts (a test keeps `values.schema.json` equal).
//!
//! It owns names, defaults and docs; what a value means and how it is validated stays in
//! `config`, which reads every setting through this table.

/// One setting: an environment variable and (unless [`Kind::Otel`]) a flag of the same meaning.
#[derive(Debug)]
pub struct Setting {
    /// The environment variable; the flag is the same name in kebab case (`--bind-addr`).
    pub name: &'static str,
    pub kind: Kind,
    pub default: Fallback,
    /// For a secret, the variable naming a file that holds it (`JWT_SECRET_FILE`).
    pub file: Option<&'static str>,
    /// One line for the README table (Markdown).
    pub doc: &'static str,
}

/// Who sets a setting, which decides where it may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A flag or a variable; the chart's `settings` map may set it.
    Plain,
    /// A flag or a variable that the chart sets itself (its ports, the pod name).
    ChartOwned,
    /// A secret: a variable, a file named by `{name}_FILE` (as containers mount secrets), or a
    /// flag; the chart takes it from a Secret.
    Secret,
    /// Read from the environment by the OpenTelemetry SDK itself, so no flag; the chart's
    /// `settings` map may set it.
    Otel,
}

/// What applies when a setting is unset (or empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// This value, parsed as if it had been given.
    Value(&'static str),
    /// Derived at start-up; the text says from what.
    Derived(&'static str),
    /// Nothing: the feature it configures is off.
    Unset,
    /// `serve` (or the subcommand that needs it) exits 64 without it.
    Required,
}

impl Setting {
    /// The flag's long name: `BIND_ADDR` → `bind-addr`.
    pub fn flag(&self) -> String {
        self.name.to_ascii_lowercase().replace('_', "-")
    }

    /// Whether the chart's `settings` map may set it.
    pub fn chart_settable(&self) -> bool {
        matches!(self.kind, Kind::Plain | Kind::Otel)
    }
}

macro_rules! settings {
    ($($id:ident: $kind:ident, $default:expr, $doc:expr;)*) => {
        $(pub const $id: Setting = Setting {
            name: stringify!($id),
            kind: Kind::$kind,
            default: $default,
            file: if matches!(Kind::$kind, Kind::Secret) {
                Some(concat!(stringify!($id), "_FILE"))
            } else {
                None
            },
            doc: $doc,
        };)*
        /// Every setting, in the README's order.
        pub const ALL: &[Setting] = &[$($id),*];
    };
}

use Fallback::{Derived, Required, Unset, Value};

settings! {
    BIND_ADDR: ChartOwned, Value("0.0.0.0:3000"),
        "public listener: Socket.IO at `/socket.io/`, `GET /healthz`";
    INTERNAL_BIND_ADDR: ChartOwned, Value("0.0.0.0:9000"),
        "internal listener: `/internal/v1/*`, `GET /metrics` (Prometheus), `GET /livez`, `GET /readyz`";
    DATABASE_URL: Secret, Value("postgres://postgres@127.0.0.1:5432/gateway"),
        "PostgreSQL holding `users` and `sessions`";
    REDIS_URL: Secret, Unset,
        "unset: single replica, in-memory adapter; set: cluster mode with the Redis adapter, on one Redis (`redis://`, `rediss://` for TLS) or a Redis Cluster (`redis-cluster://host:port?node=host:port&node=host:port`, `rediss-cluster://`); Sentinel is not supported (docs/operations.md, Redis topologies)";
    REDIS_PREFIX: Plain, Value("gateway"),
        "prefix of every Redis key, channel and stream the gateway uses (`{prefix}:auth-events`, `{prefix}:socket.io-*`, `{prefix}:driver-locations`, state keys)";
    JWT_SECRET: Secret, Required,
        "HS256 key of access tokens (never logged)";
    JWT_ISSUER: Plain, Unset,
        "checked (and required in the token) when set";
    JWT_AUDIENCE: Plain, Unset,
        "checked (and required in the token) when set; an `aud` claim is ignored when unset";
    INTERNAL_API_TOKEN: Secret, Required,
        "bearer token of `/internal/v1/*` (never logged)";
    NODE_ID: ChartOwned, Derived("host name"),
        "this replica's name in logs; unique per replica (the pod name on Kubernetes)";
    NODE_TTL_MS: Plain, Value("10000"),
        "this replica's lease in Redis, renewed every min(TTL/3, 1 s): a replica whose lease lapsed is dead (presence, `admin:stats`)";
    PRESENCE_GRACE_MS: Plain, Value("30000"),
        "how long a driver with no socket anywhere keeps their status before turning OFFLINE";
    LOCATION_RATE_PER_S: Plain, Value("10"),
        "`driver:location` updates accepted per driver per second; the excess is `RATE_LIMITED`";
    TRIP_TTL_S: Plain, Value("86400"),
        "how long the gateway keeps a trip's status and driver";
    LOCATION_STREAM_MAXLEN: Plain, Value("100000"),
        "approximate cap of the `{REDIS_PREFIX}:driver-locations` stream (0: no stream)";
    RECOVERY_WINDOW_MS: Plain, Value("120000"),
        "how long a user's recoverable events (`trip:updated`, pushes to a user) are kept for a reconnecting client (`auth.offset`); 0: recovery off, no offset argument";
    RECOVERY_MAX_EVENTS: Plain, Value("100"),
        "recoverable events kept per user room at most";
    MAX_PAYLOAD_BYTES: Plain, Value("100000"),
        "largest Engine.IO payload, polling body and WebSocket message alike (at least 1024)";
    PING_INTERVAL_MS: Plain, Value("25000"),
        "Engine.IO heartbeat: how often the server pings";
    PING_TIMEOUT_MS: Plain, Value("20000"),
        "Engine.IO heartbeat: how long a pong may take before the connection is closed";
    SHUTDOWN_GRACE_MS: Plain, Value("25000"),
        "bound of the SIGTERM drain";
    DRAIN_SPREAD_MS: Plain, Derived("two fifths of `SHUTDOWN_GRACE_MS` (10 s)"),
        "the drain closes its connections evenly over this window (each with a reason clients reconnect from) so they do not all reconnect at once; `0`: all at once; must be shorter than `SHUTDOWN_GRACE_MS`";
    LISTEN_BACKLOG: Plain, Value("4096"),
        "accept queue of the public listener (the kernel caps it at `net.core.somaxconn`); a burst of connects beyond it waits a second for a SYN retransmit";
    MAX_PENDING_HANDSHAKES: Plain, Value("1024"),
        "handshakes one replica works on at once; past it a CONNECT is refused at once with `Service unavailable` (counted as `overloaded`), so a reconnect storm is shed and spread by the clients' backoff instead of queueing past their timeout";
    CORS_ORIGINS: Plain, Value("*"),
        "browser origins allowed to open sockets, comma-separated (`https://ops.example.com,https://console.example.com`), or `*` for any; a Socket.IO request with another `Origin` header is refused with 403 (WebSocket upgrades too); requests without one (native apps, backends) are not affected";
    MAX_CONNECTIONS: Plain, Derived("the open-file limit (raised to its hard limit at start-up) less 1,024"),
        "connections the public listener holds at once, WebSocket and polling alike; past it a new connection is closed at once and counted (`gateway_connections_refused_total`), so descriptors remain for the probes, the internal API, PostgreSQL and Redis";
    HEADER_READ_TIMEOUT_MS: Plain, Value("10000"),
        "a request head (at most 16 KB, else 431) must arrive within this time of the connection or of the previous response, or the connection is closed: a slow or silent client, or an idle keep-alive connection, holds nothing longer";
    TOKEN_REFRESH_LEAD_MS: Plain, Value("60000"),
        "how long before a socket's expiry (the earlier of its JWT `exp` and its session's `access_token_expires_at`) it receives `auth:token_expiring`; at the expiry it receives `auth:expired` and is disconnected";
    SESSION_REVALIDATE_MS: Plain, Value("60000"),
        "how often each replica re-checks the sessions of its sockets in PostgreSQL (one query per batch of sessions) and disconnects revoked, gone or expired ones as a revocation would; `0`: never";
    MAX_SOCKETS_PER_USER: Plain, Value("5"),
        "sockets one user may hold per namespace, cluster-wide; one more replaces the oldest (`auth:connection_replaced`); `0`: no limit";
    HANDSHAKE_RATE_PER_USER: Plain, Value("10"),
        "handshakes one user (token `sub`) may start per `HANDSHAKE_RATE_WINDOW_MS`, cluster-wide, counted after the signature and before the database; beyond it `Too many connections`; `0`: no limit";
    HANDSHAKE_RATE_WINDOW_MS: Plain, Value("10000"),
        "the window of `HANDSHAKE_RATE_PER_USER`";
    OTEL_EXPORTER_OTLP_ENDPOINT: Otel, Unset,
        "unset: no trace export (spans cost next to nothing). Set (`http://collector:4318`; for gRPC `http://collector:4317`): the gateway's spans go there over OTLP in batches, flushed during the drain. `https://` is refused (no TLS to the collector: export to a collector on the node or in the cluster)";
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Otel, Unset,
        "the same for traces only; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`";
    OTEL_EXPORTER_OTLP_PROTOCOL: Otel, Value("http/protobuf"),
        "or `grpc`; anything else exits 64 (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` wins over it)";
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: Otel, Unset,
        "the same for traces only";
    OTEL_EXPORTER_OTLP_HEADERS: Otel, Unset,
        "sent with every export (`key=value,...`, never logged)";
    OTEL_EXPORTER_OTLP_TIMEOUT: Otel, Value("10000"),
        "bound of one export, in milliseconds";
    OTEL_SERVICE_NAME: Otel, Value("gateway"),
        "the spans' service; `service.version` and `service.instance.id` (= `NODE_ID`) are always set";
    OTEL_RESOURCE_ATTRIBUTES: Otel, Unset,
        "more resource attributes (`key=value,...`)";
    OTEL_TRACES_SAMPLER: Otel, Value("parentbased_always_on"),
        "a standard sampler: `always_on`, `always_off`, `traceidratio`, `parentbased_*`";
    OTEL_TRACES_SAMPLER_ARG: Otel, Unset,
        "the sampler's argument (the ratio of `traceidratio`: `0.1`)";
    OTEL_BSP_SCHEDULE_DELAY: Otel, Value("5000"),
        "how often the batch of spans is exported, in milliseconds";
    OTEL_BSP_MAX_QUEUE_SIZE: Otel, Value("2048"),
        "spans waiting for export; beyond it new spans are dropped (never the gateway's work)";
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE: Otel, Value("512"),
        "spans per export request";
    RUST_LOG: Plain, Value("info"),
        "log filter. The libraries' debug and trace output (which carries raw packets, i.e. tokens) is never shown";
    LOG_FORMAT: Plain, Value("json"),
        "`json` (with `trace_id`/`span_id` inside a traced span) or `pretty`. `serve` logs to stdout, other subcommands to stderr";
}

/// The setting called `name`.
pub fn named(name: &str) -> Option<&'static Setting> {
    ALL.iter().find(|s| s.name == name)
}

/// The README's configuration table (Markdown), printed by `gateway settings`.
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | flag | default | meaning |\n|---|---|---|---|\n");
    for s in ALL {
        let variable = match s.file {
            Some(file) => format!("`{}` (or `{file}`)", s.name),
            None => format!("`{}`", s.name),
        };
        let flag = match s.kind {
            Kind::Otel => "none (read by the OpenTelemetry SDK)".to_owned(),
            _ => format!("`--{}`", s.flag()),
        };
        let default = match s.default {
            Value(v) => format!("`{v}`"),
            Derived(text) => text.to_owned(),
            Unset => "unset".to_owned(),
            Required => "required".to_owned(),
        };
        out.push_str(&format!(
            "| {variable} | {flag} | {default} | {} |\n",
            s.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn repo_file(path: &str) -> String {
        let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {full}: {e}"))
    }

    #[test]
    fn names_are_unique_variables() {
        let names: BTreeSet<_> = ALL.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), ALL.len(), "a setting is listed twice");
        for s in ALL {
            assert!(
                s.name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{} is not an environment variable name",
                s.name
            );
        }
    }

    #[test]
    fn the_readme_table_is_this_table() {
        let readme = repo_file("README.md");
        let (begin, end) = ("<!-- settings:begin -->\n", "<!-- settings:end -->");
        let start = readme
            .find(begin)
            .expect("README has <!-- settings:begin -->")
            + begin.len();
        let stop = readme.find(end).expect("README has <!-- settings:end -->");
        assert!(
            readme[start..stop] == markdown_table(),
            "README's configuration table differs from gateway/src/settings.rs: put the output of \
             `cargo run -q --bin gateway -- settings` between the markers.\nExpected:\n{}",
            markdown_table()
        );
    }

    #[test]
    fn the_chart_accepts_exactly_the_settable_settings() {
        let schema: serde_json::Value =
            serde_json::from_str(&repo_file("k8s/gateway/values.schema.json")).expect("JSON");
        let names = &schema["properties"]["settings"]["propertyNames"]["enum"];
        let in_chart: BTreeSet<&str> = names
            .as_array()
            .expect("settings.propertyNames.enum is a list")
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        let settable: BTreeSet<&str> = ALL
            .iter()
            .filter(|s| s.chart_settable())
            .map(|s| s.name)
            .collect();
        assert_eq!(
            in_chart, settable,
            "k8s/gateway/values.schema.json settings names"
        );
    }
}
