//! The `pid` of Socket.IO's connection state recovery, as the gateway gives it: the stock
//! socket.io-client keeps the `pid` of a CONNECT answer and sends it back, with the offset of
//! the last event it got, on its next CONNECT; an answer with the same `pid` sets
//! `socket.recovered`. A pid is a nonce and a MAC of it with the namespace and the user, under a
//! key every replica derives from `INTERNAL_API_TOKEN`: any replica, and a replica restarted,
//! recognises it, and one user's pid is not another's. It names no stream: the token decides
//! whose events are replayed; the pid says whether the client resumed the session it had, and
//! where that session started: the stock client sends an offset only once an event arrived, so a
//! socket that drops before its first one resumes from the position its pid was made at.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use shared::namespace::Namespace;

use super::Offset;

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

    /// A new pid for a socket of `user` in `ns` that stands at `at` (`nonce.offset.tag`, or
    /// `nonce.tag` when the log did not say).
    pub fn mint(&self, ns: Namespace, user: &str, at: Option<Offset>) -> String {
        let nonce = uuid::Uuid::new_v4();
        let at = at.map(|o| o.to_string());
        let tag = self.tag(ns, user, nonce.as_bytes(), at.as_deref());
        let nonce = URL_SAFE_NO_PAD.encode(nonce.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES]);
        match at {
            Some(at) => format!("{nonce}.{at}.{tag}"),
            None => format!("{nonce}.{tag}"),
        }
    }

    /// The pid, when it was made for `user` in `ns` with this key.
    pub fn check(&self, pid: &str, ns: Namespace, user: &str) -> Option<Pid> {
        let mut parts = pid.split('.');
        let (nonce, at, tag) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(nonce), Some(tag), None, None) => (nonce, None, tag),
            (Some(nonce), Some(at), Some(tag), None) => (nonce, Some(at), tag),
            _ => return None,
        };
        let nonce = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != TAG_BYTES {
            return None;
        }
        let mut mac = mac_with(&self.0);
        feed(&mut mac, ns, user, &nonce, at);
        mac.verify_truncated_left(&tag).ok()?;
        let made_at = match at {
            Some(at) => Some(at.parse().ok()?),
            None => None,
        };
        Some(Pid { made_at })
    }

    fn tag(&self, ns: Namespace, user: &str, nonce: &[u8], at: Option<&str>) -> Vec<u8> {
        let mut mac = mac_with(&self.0);
        feed(&mut mac, ns, user, nonce, at);
        mac.finalize().into_bytes().to_vec()
    }
}

/// A pid this gateway made for the user and namespace at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pid {
    /// Where its socket stood when it was made.
    pub made_at: Option<Offset>,
}

fn mac_with(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes a key of any length")
}

/// What a pid's MAC covers, each part length-prefixed so no two inputs read alike.
fn feed(mac: &mut HmacSha256, ns: Namespace, user: &str, nonce: &[u8], at: Option<&str>) {
    let parts = [ns.path().as_bytes(), user.as_bytes(), nonce];
    for part in parts.into_iter().chain(at.map(str::as_bytes)) {
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
        let at = Offset { ms: 17, seq: 2 };
        for made_at in [Some(at), None] {
            let pid = key.mint(Namespace::Passengers, USER, made_at);
            let verify = |key: &PidKey, ns, user| key.check(&pid, ns, user).is_some();
            assert_eq!(
                key.check(&pid, Namespace::Passengers, USER),
                Some(Pid { made_at })
            );
            assert!(
                verify(
                    &PidKey::derive("internal-token"),
                    Namespace::Passengers,
                    USER
                ),
                "another replica, or a restarted one, derives the same key"
            );
            assert!(
                !verify(&key, Namespace::Passengers, OTHER),
                "another user's"
            );
            assert!(
                !verify(&key, Namespace::Drivers, USER),
                "another namespace's"
            );
            assert!(!verify(
                &PidKey::derive("rotated"),
                Namespace::Passengers,
                USER
            ));
            assert_ne!(
                pid,
                key.mint(Namespace::Passengers, USER, made_at),
                "a new nonce each time"
            );
            for forged in ["", "x", "a.b", &format!("{pid}x"), &pid.replace('.', "")] {
                assert!(
                    key.check(forged, Namespace::Passengers, USER).is_none(),
                    "{forged}"
                );
            }
        }
    }

    #[test]
    fn a_pid_s_position_cannot_be_changed() {
        let key = PidKey::derive("internal-token");
        let pid = key.mint(Namespace::Passengers, USER, Some(Offset { ms: 17, seq: 2 }));
        let moved = pid.replace(".17-2.", ".16-2.");
        assert_ne!(moved, pid);
        assert!(key.check(&moved, Namespace::Passengers, USER).is_none());
        let dropped = pid.replace(".17-2.", ".");
        assert!(key.check(&dropped, Namespace::Passengers, USER).is_none());
    }
}
