//! The revocation notice (`auth:session_revoked`), told once to each of the user's other sockets
//! however often the revocation is repeated (the auth service retrying, several replicas'
//! re-validation, every replica hearing the channel): the one place its de-duplication lives.
//!
//! - Per replica, a revocation is announced the first time it is heard ([`RevocationNotices::first_time`]).
//! - With recovery on, the notice is kept once for the cluster under a once-marker of the
//!   session: the first replica to keep it publishes it to all, and it reaches sockets through
//!   the recovery feed, with an offset.
//! - If the log cannot keep it (Redis down), this replica tells its own sockets and remembers
//!   it, so the kept copy a retry brings later is not handed to them again
//!   ([`RevocationNotices::already_told`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use shared::events::{AUTH_SESSION_REVOKED, SessionRevokedNotice};
use socketioxide::{SocketIo, adapter::Adapter};

use super::deliver::{Recipient, count_here, send_here};
use crate::{
    recovery::{Entry, log::RecoveryLog, resume},
    telemetry::metrics,
};

/// Revocation notices on this replica.
pub struct RevocationNotices {
    /// Sessions whose revocation this replica already announced.
    announced: RecentRevocations,
    /// Revocations this replica told its sockets of without keeping them (the log was down).
    told_unkept: RecentRevocations,
    /// Where the notice is kept for the user's reconnecting apps; `None`: recovery is off.
    recovery: Option<Arc<dyn RecoveryLog>>,
}

impl RevocationNotices {
    pub fn new(recovery: Option<Arc<dyn RecoveryLog>>) -> Self {
        Self {
            announced: RecentRevocations::default(),
            told_unkept: RecentRevocations::default(),
            recovery,
        }
    }

    /// Whether session `sid`'s revocation is heard here for the first time (then its user's
    /// other sockets are told).
    pub fn first_time(&self, sid: &str) -> bool {
        self.announced.first_time(sid)
    }

    /// Tells `to`'s sockets, except those in `except`, of session `sid`'s revocation. Returns
    /// how many of this replica's sockets it is for.
    pub async fn notify<A: Adapter>(
        &self,
        io: &SocketIo<A>,
        to: &Recipient,
        except: Option<String>,
        sid: &str,
        notice: &SessionRevokedNotice,
    ) -> usize {
        if self.keep(to, sid, notice).await {
            count_here(io, to, except)
        } else {
            self.told_unkept.first_time(sid);
            send_here(io, to, except, AUTH_SESSION_REVOKED, notice).await
        }
    }

    /// Keeps the notice once for the cluster; `false` when it was not kept (recovery off, or
    /// the log down).
    async fn keep(&self, to: &Recipient, sid: &str, notice: &SessionRevokedNotice) -> bool {
        let room = resume::user_room(to.namespace(), to.user_id().unwrap_or_default());
        let (Some(log), Some(room), Ok(value)) =
            (&self.recovery, room, serde_json::to_value(notice))
        else {
            return false;
        };
        match log
            .append_once(&room, &once_marker(sid), AUTH_SESSION_REVOKED, &value)
            .await
        {
            Ok(_) => true,
            Err(error) => {
                metrics::redis_error("recovery_append");
                tracing::warn!(%error, "revocation notice not kept; sent without an offset");
                false
            }
        }
    }

    /// Whether this replica already told its sockets of the revocation `entry` notifies of,
    /// without an offset (the log was down then): the kept copy of a later retry is not sent
    /// again.
    pub fn already_told(&self, entry: &Entry) -> bool {
        entry.event == AUTH_SESSION_REVOKED
            && entry
                .data
                .get("sid")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|sid| self.told_unkept.contains(sid))
    }
}

/// The once-marker a session's notice is kept under in each of its user's rooms.
fn once_marker(sid: &str) -> String {
    format!("revoked:{sid}")
}

/// How long a revoked session is remembered, so a repeat of its revocation notifies nobody
/// again. Past it, a repeat would notify again: retries come within minutes.
const ANNOUNCED_FOR: Duration = Duration::from_secs(15 * 60);

/// Remembered revocations before old ones are swept.
const FORGET_ABOVE: usize = 4_096;

/// Revoked sessions remembered on this replica, each for [`ANNOUNCED_FOR`].
#[derive(Default)]
struct RecentRevocations(Mutex<HashMap<String, Instant>>);

impl RecentRevocations {
    /// Whether `sid` was recorded within [`ANNOUNCED_FOR`].
    fn contains(&self, sid: &str) -> bool {
        let seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(sid).is_some_and(|at| at.elapsed() < ANNOUNCED_FOR)
    }

    /// Records `sid`; `true` unless it was recorded within [`ANNOUNCED_FOR`].
    fn first_time(&self, sid: &str) -> bool {
        let now = Instant::now();
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= FORGET_ABOVE {
            seen.retain(|_, at| now.duration_since(*at) < ANNOUNCED_FOR);
        }
        match seen.get(sid) {
            Some(at) if now.duration_since(*at) < ANNOUNCED_FOR => false,
            _ => {
                seen.insert(sid.to_owned(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_is_announced_once() {
        let notices = RevocationNotices::new(None);
        assert!(notices.first_time("s1"));
        assert!(!notices.first_time("s1"));
        assert!(notices.first_time("s2"));
    }
}
