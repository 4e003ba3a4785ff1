//! Claims of an access token (HS256 JWT) as the auth service issues them.

use serde::{Deserialize, Serialize};

/// What `gateway token` signs. Verification does not deserialize into this type: the handshake
/// must tell a missing `sub`/`sid` apart from a malformed token, so it reads them loosely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user's id (`users.id`, a UUID).
    pub sub: String,
    /// The session's `jti` (`sessions.jti`).
    pub sid: String,
    pub iat: u64,
    pub exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}
