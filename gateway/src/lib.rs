//! The realtime gateway of the ride-hailing platform: Socket.IO for drivers, passengers and
//! operations staff, pushed to by backend services, scaled out over Redis. The floors, what each
//! owns and must not touch, and the handshake, push and revocation flows are drawn in
//! `docs/architecture.md`; `tests/layout.rs` keeps imports pointing down.
//!
//! # Layout
//! Ground floor (imports nothing above it):
//! - [`settings`]: every setting defined once (name, default, doc): the source of the flags,
//!   the defaults, the README table and the chart's accepted names.
//! - [`config`]: typed settings from flags and environment, validated before anything binds.
//! - [`clock`]: wall-clock milliseconds and the contract's RFC 3339 timestamps.
//! - [`tasks`]: a replica's background tasks, owned in one place and stopped by the drain.
//! - [`input`]: typed input: bodies and payloads decoded (serde) into structs of domain types
//!   and id newtypes, refused in the contract's words.
//! - [`telemetry`]: logs (JSON with trace ids, or pretty), OpenTelemetry traces over OTLP,
//!   Prometheus metrics.
//!
//! Storage (imports the ground floor only):
//! - [`store`]: PostgreSQL (identity query, migrations) and Redis (cluster clients).
//! - [`state`]: cluster state, one interface per concern (drivers, presence, leases, trips,
//!   per-user limits), in memory or in Redis (Lua scripts, one low-level script module), with
//!   its key schema.
//! - [`recovery`]: missed-event recovery: the log of kept events (memory or Redis), offsets,
//!   and a socket's gate and replay.
//!
//! Rules and edges:
//! - [`trips`]: the trip lifecycle's decision table, above storage.
//! - [`auth`]: access-token verification and the handshake's steps; the one place that words
//!   `connect_error` messages.
//! - [`origins`]: `CORS_ORIGINS`, the browser origins allowed to open sockets.
//! - [`listener`]: the HTTP/1.1 listeners: connection cap, header-read timeout, head size.
//! - [`request_head`]: what Engine.IO keeps of a request's head: the few headers used, in
//!   allocations of their own (not hyper's read buffer).
//! - [`health`]: readiness and drain state.
//!
//! The two sides a replica serves:
//! - [`realtime`]: the Socket.IO side: namespaces, a socket's life, each namespace's events,
//!   delivery (one service, what is kept decided by the event), session lifetime, presence.
//! - [`internal`]: the internal HTTP API and probes; the one place that maps errors to HTTP.
//!
//! Roof:
//! - [`app`]: one replica's life and the one composition root: bind, build the mode's backend,
//!   wire once, serve, drain on SIGTERM.
//! - [`cli`]: subcommands (`serve`, `migrate`, `token`, `probe`, `settings`) and one flag per
//!   setting.
//!
//! `test_support` (tests only): property-test inputs shared by the unit tests.
//!
//! Wire types (event names, room names, payloads, claims) live in the `shared` crate.

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod health;
pub mod input;
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
pub mod trips;
