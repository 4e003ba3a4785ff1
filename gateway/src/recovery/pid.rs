//! The `pid` of Socket.IO's connection state recovery, as the gateway gives it: the stock
//! socket.io-client keeps the `pid` of a CONNECT answer and sends it back, with the offset of
//! the last event it got, on its next CONNECT; an answer with the same `pid` sets
//! `socket.recovered`. A pid is a nonce and a MAC of it with the namespace and the user, under a
//! key every replica derives from `INTERNAL_API_TOKEN`: any replica, and a replica restarted,
//! recognises it, and one user's pid is not another's. It names no stream: the token decides
//! whose events are replayed; the pid only says whether the client resumed the session it had.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use shared::namespace::Namespace;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC a pid carries (128 bits).
const TAG_BYTES: usize = 16;

/// The key pids are made and checked with.
#[derive(Clone)]
pub struct PidKey(Vec<u8>);

impl std::fmt::Debug for PidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PidKey([redacted])")
    }
}

impl PidKey {
    /// The key derived from `secret`: the same on every replica given the same secret.
    pub fn derive(secret: &str) -> Self {
        let mut mac = mac_with(secret.as_bytes());
        mac.update(b"socket.io connection state recovery pid v1");
        Self(mac.finalize().into_bytes().to_vec())
    }

    /// A new pid for a socket of `user` in `ns`.
    pub fn mint(&self, ns: Namespace, user: &str) -> String {
        let nonce = uuid::Uuid::new_v4();
        let tag = self.tag(ns, user, nonce.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(nonce.as_bytes()),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }

    /// Whether `pid` was made for `user` in `ns` with this key.
    pub fn verify(&self, pid: &str, ns: Namespace, user: &str) -> bool {
        let Some((nonce, tag)) = pid.split_once('.') else {
            return false;
        };
        let (Ok(nonce), Ok(tag)) = (URL_SAFE_NO_PAD.decode(nonce), URL_SAFE_NO_PAD.decode(tag))
        else {
            return false;
        };
        if tag.len() != TAG_BYTES {
            return false;
        }
        let mut mac = mac_with(&self.0);
        feed(&mut mac, ns, user, &nonce);
        mac.verify_truncated_left(&tag).is_ok()
    }

    fn tag(&self, ns: Namespace, user: &str, nonce: &[u8]) -> Vec<u8> {
        let mut mac = mac_with(&self.0);
        feed(&mut mac, ns, user, nonce);
        mac.finalize().into_bytes().to_vec()
    }
}

fn mac_with(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes a key of any length")
}

/// What a pid's MAC covers, each part length-prefixed so no two inputs read alike.
fn feed(mac: &mut HmacSha256, ns: Namespace, user: &str, nonce: &[u8]) {
    for part in [ns.path().as_bytes(), user.as_bytes(), nonce] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    const OTHER: &str = "0b5a2b1e-3f6c-4c1a-9d8e-2a7f5c3b9e10";

    #[test]
    fn a_pid_is_recognised_for_its_user_and_namespace_only() {
        let key = PidKey::derive("internal-token");
        let pid = key.mint(Namespace::Passengers, USER);
        assert!(key.verify(&pid, Namespace::Passengers, USER));
        assert!(
            PidKey::derive("internal-token").verify(&pid, Namespace::Passengers, USER),
            "another replica, or a restarted one, derives the same key"
        );
        assert!(
            !key.verify(&pid, Namespace::Passengers, OTHER),
            "another user's"
        );
        assert!(
            !key.verify(&pid, Namespace::Drivers, USER),
            "another namespace's"
        );
        assert!(!PidKey::derive("rotated").verify(&pid, Namespace::Passengers, USER));
        assert_ne!(
            pid,
            key.mint(Namespace::Passengers, USER),
            "a new nonce each time"
        );
        for forged in ["", "x", "a.b", &format!("{pid}x"), &pid.replace('.', "")] {
            assert!(!key.verify(forged, Namespace::Passengers, USER), "{forged}");
        }
    }
}
