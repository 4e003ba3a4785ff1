//! Re-validation (`docs/spec/lifecycle.md`): revocations that pub/sub missed (Redis down,
//! a message lost) still end, within `SESSION_REVALIDATE_MS` plus one round.
//!
//! Every round reads the sessions of this replica's sockets from PostgreSQL in batches (one
//! query per [`BATCH`] sessions, never one per socket) and revokes, the way the auth service
//! would, every session that is gone, revoked, of another user or expired: the event goes
//! through [`SessionEvents::publish`], so every replica disconnects it and each other socket of
//! the user gets its notice once. With PostgreSQL down a round is skipped (logged, counted),
//! never a reason to disconnect.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use shared::{auth_events::AuthEvent, namespace::Namespace};
use socketioxide::{SocketIo, adapter::Adapter};
use uuid::Uuid;

use super::{context::SocketContext, expiry, io::Io, sessions::SessionEvents};
use crate::{
    store::postgres::{PgStore, SessionStanding},
    telemetry::metrics,
};

/// Sessions per query.
pub const BATCH: usize = 5_000;

/// Why a connected session must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Gone, revoked, or of another user.
    Revoked,
    /// `access_token_expires_at` passed.
    Expired,
}

impl Verdict {
    /// The `reason` of the revocation notice.
    fn reason(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// What re-validation knows of one connected session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Connected {
    user_id: String,
    /// The earliest expiry of its sockets here (milliseconds since the epoch).
    expires_at_ms: u64,
}

/// `now_ms`: this replica's clock. An expiry the sockets already know of is the sweep's to
/// apply (with `auth:expired`, within a second); re-validation ends only sessions the database
/// says expired earlier than the sockets were told (the auth service shortened them).
fn verdict(socket: &Connected, standing: Option<&SessionStanding>, now_ms: u64) -> Option<Verdict> {
    let Some(session) = standing else {
        return Some(Verdict::Revoked);
    };
    let same_user = Uuid::parse_str(&socket.user_id).is_ok_and(|u| u == session.user_id);
    let sweep_due = socket.expires_at_ms <= now_ms + expiry::SWEEP_EVERY.as_millis() as u64;
    if session.revoked || !same_user {
        Some(Verdict::Revoked)
    } else if session.access_expired && !sweep_due {
        Some(Verdict::Expired)
    } else {
        None
    }
}

/// Runs a round every `every` until the process ends.
pub async fn run(io: Io, store: PgStore, events: Arc<SessionEvents>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: sockets were just checked by their handshake
    loop {
        tick.tick().await;
        round(&io, &store, &events).await;
    }
}

/// One round; returns how many sessions it revoked.
pub async fn round(io: &Io, store: &PgStore, events: &SessionEvents) -> usize {
    let sessions = on_io!(io, io => connected_sessions(io));
    let started = Instant::now();
    if sessions.is_empty() {
        metrics::revalidation("ok", 0, 0, started);
        return 0;
    }
    let jtis: Vec<String> = sessions.keys().cloned().collect();
    let mut standings = HashMap::with_capacity(jtis.len());
    for batch in jtis.chunks(BATCH) {
        match store.sessions(batch).await {
            Ok(rows) => standings.extend(rows.into_iter().map(|s| (s.jti.clone(), s))),
            Err(error) => {
                tracing::warn!(%error, sessions = jtis.len(), "session re-validation skipped: database unavailable");
                metrics::revalidation("skipped", 0, 0, started);
                return 0;
            }
        }
    }
    let now = crate::clock::now_ms();
    let invalid: Vec<(String, String, Verdict)> = sessions
        .into_iter()
        .filter_map(|(sid, connected)| {
            let v = verdict(&connected, standings.get(&sid), now)?;
            Some((sid, connected.user_id, v))
        })
        .collect();
    metrics::revalidation("ok", jtis.len(), invalid.len(), started);
    tracing::debug!(
        sessions = jtis.len(),
        invalid = invalid.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "sessions re-validated"
    );
    for (sid, user_id, v) in &invalid {
        tracing::info!(
            sid,
            user = user_id,
            reason = v.reason(),
            "re-validation ends a session"
        );
        let event = AuthEvent::SessionRevoked {
            sid: sid.clone(),
            user_id: user_id.clone(),
            reason: Some(v.reason().to_owned()),
            at: None,
        };
        // Redis down: applied on this replica only (the others find it in their own round).
        if let Err(error) = events.publish(event).await {
            tracing::warn!(%error, sid, "re-validation revoked a session on this replica only");
        }
    }
    invalid.len()
}

/// This replica's sessions, by `sid`.
fn connected_sessions<A: Adapter>(io: &SocketIo<A>) -> HashMap<String, Connected> {
    let mut sessions: HashMap<String, Connected> = HashMap::new();
    for ns in Namespace::ALL {
        let Some(op) = io.of(ns.path()) else { continue };
        for s in op.local().sockets() {
            let Some(ctx) = s.extensions.get::<Arc<SocketContext>>() else {
                continue;
            };
            let connected = sessions
                .entry(ctx.sid().to_owned())
                .or_insert_with(|| Connected {
                    user_id: ctx.user_id().to_owned(),
                    expires_at_ms: ctx.expires_at_ms,
                });
            connected.expires_at_ms = connected.expires_at_ms.min(ctx.expires_at_ms);
        }
    }
    sessions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(user: Uuid, revoked: bool, expired: bool) -> SessionStanding {
        SessionStanding {
            jti: "s".into(),
            user_id: user,
            revoked,
            access_expired: expired,
        }
    }

    #[test]
    fn gone_revoked_foreign_and_expired_sessions_end() {
        let u = Uuid::new_v4();
        let now = 1_000_000;
        let me = Connected {
            user_id: u.to_string(),
            expires_at_ms: now + 60_000,
        };
        let v = |s: Option<&SessionStanding>| verdict(&me, s, now);
        assert_eq!(v(None), Some(Verdict::Revoked));
        assert_eq!(v(Some(&standing(u, true, false))), Some(Verdict::Revoked));
        assert_eq!(
            v(Some(&standing(Uuid::new_v4(), false, false))),
            Some(Verdict::Revoked)
        );
        assert_eq!(v(Some(&standing(u, false, true))), Some(Verdict::Expired));
        assert_eq!(v(Some(&standing(u, false, false))), None);
    }

    #[test]
    fn an_expiry_the_sockets_know_of_is_left_to_the_sweep() {
        let u = Uuid::new_v4();
        let now = 1_000_000;
        let expiring = Connected {
            user_id: u.to_string(),
            expires_at_ms: now + 500,
        };
        assert_eq!(
            verdict(&expiring, Some(&standing(u, false, true)), now),
            None
        );
        // Revoked still ends it at once.
        assert_eq!(
            verdict(&expiring, Some(&standing(u, true, true)), now),
            Some(Verdict::Revoked)
        );
    }
}
