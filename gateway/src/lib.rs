//! The realtime gateway of the ride-hailing platform: Socket.IO for drivers, passengers and
//! operations staff, pushed to by backend services, scaled out over Redis.
//!
//! # Layout
//! - [`config`]: typed settings from flags and environment, validated before anything binds.
//! - [`settings`]: every setting defined once (name, default, doc): the source of the flags,
//!   the defaults, the README table and the chart's accepted names.
//! - [`cli`]: subcommands (`serve`, `migrate`, `token`, `probe`, `settings`) and one flag per
//!   setting.
//! - [`app`]: one replica's life: bind, start, serve, drain on SIGTERM.
//! - [`listener`]: the HTTP/1.1 listeners: connection cap, header-read timeout, head size.
//! - [`origins`]: `CORS_ORIGINS`, the browser origins allowed to open sockets.
//! - [`auth`]: access-token verification and the handshake's steps; the one place that words
//!   `connect_error` messages.
//! - [`store`]: PostgreSQL (identity query, migrations) and Redis (cluster clients).
//! - [`realtime`]: namespaces, rooms, socket context, the cluster adapter, session revocation,
//!   session lifetime (expiry, refresh, re-validation, per-user limits), driver presence.
//! - [`internal`]: the internal HTTP API and probes; the one place that maps errors to HTTP.
//! - [`health`]: readiness and drain state.
//! - [`request_head`]: what Engine.IO keeps of a request's head: the few headers used, in
//!   allocations of their own (not hyper's read buffer).
//! - [`telemetry`]: logs (JSON with trace ids, or pretty), OpenTelemetry traces over OTLP,
//!   Prometheus metrics.
//!
//! Wire types (event names, room names, payloads, claims) live in the `shared` crate.

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod health;
pub mod internal;
pub mod listener;
pub mod origins;
#[macro_use]
pub mod realtime;
pub mod recovery;
pub mod request_head;
pub mod settings;
pub mod state;
pub mod store;
pub mod tasks;
pub mod telemetry;
#[cfg(test)]
mod test_support;
