//! Server-to-client events and their payloads.

use serde::{Deserialize, Serialize};

/// Sent to a socket right after a successful handshake.
pub const HELLO: &str = "hello";
/// Sent to a user's other sockets when one of their sessions is revoked.
pub const AUTH_SESSION_REVOKED: &str = "auth:session_revoked";

/// Payload of [`HELLO`]: `{ "ok": true, "nsp": "/drivers" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub ok: bool,
    pub nsp: String,
}

/// Payload of [`AUTH_SESSION_REVOKED`]: `{ "sid", "reason", "at" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRevokedNotice {
    pub sid: String,
    pub reason: String,
    /// RFC 3339, when the revocation happened (as published, else when the gateway accepted it).
    pub at: String,
}
