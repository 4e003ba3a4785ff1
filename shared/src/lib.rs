//! Wire types of the ride-hailing gateway, shared by the gateway, its tests and its load generator.
//!
//! # Layout
//! - [`namespace`]: the three Socket.IO namespaces and which user types each admits.
//! - [`rooms`]: every room name the gateway joins or emits to, built in one place.
//! - [`events`]: server-to-client event names and their payloads.
//! - [`auth_events`]: auth events published by the auth service (HTTP bodies and the Redis channel).
//! - [`claims`]: the claims of an access token.
//!
//! This crate does no I/O: serde types and pure functions only.

pub mod auth_events;
pub mod claims;
pub mod events;
pub mod namespace;
pub mod rooms;
