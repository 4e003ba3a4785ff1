//! Access to the gateway's dependencies: PostgreSQL (identities, schema) and Redis (cluster
//! clients). Each has its own error type; nothing here knows about Socket.IO.

pub mod migrate;
pub mod postgres;
pub mod redis;
