//! Expiry of connected sockets (`docs/spec/lifecycle.md`): `auth:token_expiring` a lead
//! before a socket's expiry, `auth:expired` and a server disconnect at it.
//!
//! One ordered set of deadlines per replica, swept once a second by one task, instead of a
//! sleeping task per socket: a socket costs one entry (its next deadline) until it closes.
//! Entries name the expiry they were made for; a refresh moves the socket's expiry, and an
//! entry for an expiry the socket no longer has is dropped when it comes due.

use std::{collections::BTreeSet, sync::Mutex, time::Duration};

use super::{context::SocketContext, io::Io};
use crate::{
    clock::{now_ms, rfc3339_ms},
    telemetry::metrics::{self, DisconnectReason},
};
use shared::{
    events::{AUTH_EXPIRED, AUTH_TOKEN_EXPIRING, Expired, TokenExpiring},
    namespace::Namespace,
};
use socketioxide::{SocketIo, adapter::Adapter, extract::SocketRef, socket::Sid};

/// How often due deadlines are applied: expiry is enforced within this of its moment.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What happens to a socket when its deadline comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Warn,
    Expire,
}

/// A socket's next deadline. Ordered by time first, so the set's front is what is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at_ms: u64,
    socket: Sid,
    /// Index in [`Namespace::ALL`] (namespaces are not ordered).
    ns: u8,
    step: Step,
    /// The expiry this deadline was made for.
    expires_at_ms: u64,
}

/// A deadline that came due: tell or disconnect the socket, if it still has that expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub ns: Namespace,
    pub socket: Sid,
    pub expire: bool,
    pub expires_at_ms: u64,
}

/// The deadlines of every socket of this replica.
pub struct Deadlines {
    lead_ms: u64,
    pending: Mutex<BTreeSet<Deadline>>,
}

impl Deadlines {
    pub fn new(lead: Duration) -> Self {
        Self {
            lead_ms: u64::try_from(lead.as_millis()).unwrap_or(u64::MAX),
            pending: Mutex::new(BTreeSet::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Deadline>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts watching a socket that expires at `expires_at_ms`. Returns `true` when it is
    /// already inside the lead: the caller warns it at once.
    pub fn watch(&self, ns: Namespace, socket: Sid, expires_at_ms: u64, now_ms: u64) -> bool {
        let warn_at = expires_at_ms.saturating_sub(self.lead_ms);
        let warn_now = warn_at <= now_ms;
        let (at_ms, step) = if warn_now {
            (expires_at_ms, Step::Expire)
        } else {
            (warn_at, Step::Warn)
        };
        self.lock().insert(Deadline {
            at_ms,
            socket,
            ns: ns_index(ns),
            step,
            expires_at_ms,
        });
        warn_now
    }

    /// Stops watching a socket (closed, or refreshed onto another expiry).
    pub fn forget(&self, ns: Namespace, socket: Sid, expires_at_ms: u64) {
        let ns = ns_index(ns);
        let warn = Deadline {
            at_ms: expires_at_ms.saturating_sub(self.lead_ms),
            socket,
            ns,
            step: Step::Warn,
            expires_at_ms,
        };
        let expire = Deadline {
            at_ms: expires_at_ms,
            step: Step::Expire,
            ..warn
        };
        let mut pending = self.lock();
        pending.remove(&warn);
        pending.remove(&expire);
    }

    /// Takes what is due at `now_ms`. A warning due now also schedules its expiry.
    pub fn take_due(&self, now_ms: u64) -> Vec<Due> {
        let mut pending = self.lock();
        let mut due = Vec::new();
        while let Some(first) = pending.first().copied() {
            if first.at_ms > now_ms {
                break;
            }
            pending.pop_first();
            if first.step == Step::Warn {
                pending.insert(Deadline {
                    at_ms: first.expires_at_ms,
                    step: Step::Expire,
                    ..first
                });
            }
            due.push(Due {
                ns: Namespace::ALL[usize::from(first.ns)],
                socket: first.socket,
                expire: first.step == Step::Expire,
                expires_at_ms: first.expires_at_ms,
            });
        }
        due
    }

    /// Sockets watched now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn ns_index(ns: Namespace) -> u8 {
    Namespace::ALL
        .iter()
        .position(|n| *n == ns)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(0)
}

/// Starts watching socket `s`, which expires at `expires_at_ms` (a new socket, or one just
/// refreshed), and warns it at once when that is already inside the lead.
pub fn watch<A: Adapter>(
    deadlines: &Deadlines,
    s: &SocketRef<A>,
    ns: Namespace,
    expires_at_ms: u64,
) {
    if deadlines.watch(ns, s.id, expires_at_ms, now_ms()) {
        warn(s, expires_at_ms);
    }
}

/// Tells a socket its access ends soon: refresh now.
pub fn warn<A: Adapter>(s: &SocketRef<A>, expires_at_ms: u64) {
    let notice = TokenExpiring {
        expires_at: rfc3339_ms(expires_at_ms),
    };
    if let Err(error) = s.emit(AUTH_TOKEN_EXPIRING, &notice) {
        tracing::debug!(socket = %s.id, %error, "expiry warning not sent");
    }
}

/// Applies what is due, once a second, until the process ends.
pub async fn sweep(io: Io, deadlines: std::sync::Arc<Deadlines>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let due = deadlines.take_due(now_ms());
        if due.is_empty() {
            continue;
        }
        on_io!(&io, io => apply(io, &due))
    }
}

fn apply<A: Adapter>(io: &SocketIo<A>, due: &[Due]) {
    let mut expired = 0;
    for d in due {
        let Some(s) = io.of(d.ns.path()).and_then(|op| op.get_socket(d.socket)) else {
            continue;
        };
        // A refresh moved the socket's expiry since this deadline was made.
        let current = s.extensions.get::<std::sync::Arc<SocketContext>>();
        if current.map(|ctx| ctx.expires_at_ms) != Some(d.expires_at_ms) {
            continue;
        }
        if !d.expire {
            warn(&s, d.expires_at_ms);
            continue;
        }
        let notice = Expired {
            at: rfc3339_ms(d.expires_at_ms),
        };
        if let Err(error) = s.emit(AUTH_EXPIRED, &notice) {
            tracing::debug!(socket = %s.id, %error, "expiry notice not sent");
        }
        tracing::info!(nsp = %d.ns, socket = %s.id, "socket expired; disconnecting");
        let _ = s.disconnect();
        expired += 1;
    }
    metrics::session_disconnects(DisconnectReason::Expired, expired);
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: Namespace = Namespace::Drivers;

    #[test]
    fn a_socket_is_warned_a_lead_before_its_expiry_then_expired() {
        let d = Deadlines::new(Duration::from_secs(60));
        let s = Sid::new();
        assert!(!d.watch(NS, s, 100_000, 0), "not yet inside the lead");
        assert!(d.take_due(39_999).is_empty());
        let warned = d.take_due(40_000);
        assert_eq!(warned.len(), 1);
        assert!(!warned[0].expire);
        assert!(d.take_due(99_999).is_empty());
        let expired = d.take_due(100_000);
        assert_eq!(expired.len(), 1);
        assert!(expired[0].expire);
        assert!(d.is_empty(), "nothing left once expired");
    }

    #[test]
    fn inside_the_lead_the_warning_is_the_callers_and_only_the_expiry_waits() {
        let d = Deadlines::new(Duration::from_secs(60));
        let s = Sid::new();
        assert!(d.watch(NS, s, 30_000, 0));
        let due = d.take_due(30_000);
        assert_eq!(due.len(), 1);
        assert!(due[0].expire);
    }

    #[test]
    fn forgetting_a_socket_removes_its_deadline_at_either_step() {
        let d = Deadlines::new(Duration::from_secs(60));
        let (a, b) = (Sid::new(), Sid::new());
        d.watch(NS, a, 100_000, 0);
        d.watch(NS, b, 100_000, 0);
        d.take_due(40_000); // both now wait for their expiry
        d.forget(NS, a, 100_000);
        d.watch(NS, b, 200_000, 0); // b refreshed
        d.forget(NS, b, 100_000);
        assert_eq!(d.len(), 1);
        assert!(d.take_due(100_000).is_empty());
        let due = d.take_due(200_000);
        let steps: Vec<_> = due.iter().map(|d| (d.socket, d.expire)).collect();
        assert_eq!(steps, [(b, false), (b, true)], "b: warned, then expired");
    }
}
