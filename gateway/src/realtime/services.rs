//! What the socket handlers share ([`Services`]): built once per replica, behind an `Arc`.

use std::sync::{Arc, atomic::AtomicU64};

use tokio::sync::Semaphore;

use super::{
    expiry::Deadlines, offers::Offers, presence::LocalPresence, throttle::AdminLocationThrottle,
};
use crate::{
    auth::handshake::Gatekeeper,
    config::LifetimeSettings,
    recovery::{log::RecoveryLog, pid::PidKey},
    state::StateEngine,
};

/// What the socket handlers share.
pub struct Services {
    pub gate: Gatekeeper,
    pub state: Arc<dyn StateEngine>,
    /// Expiry, re-validation and per-user limits.
    pub lifetime: LifetimeSettings,
    /// Every socket's next expiry deadline.
    pub deadlines: Arc<Deadlines>,
    pub presence: Arc<LocalPresence>,
    pub admin_throttle: AdminLocationThrottle,
    /// Events no handler knows, ignored; counted for operators.
    pub unknown_events: AtomicU64,
    /// One permit per handshake in progress (`MAX_PENDING_HANDSHAKES`).
    pub pending_handshakes: Semaphore,
    /// Missed-event recovery; `None` when it is off (`RECOVERY_WINDOW_MS=0`).
    pub recovery: Option<Arc<dyn RecoveryLog>>,
    /// Trip offers held until answered or expired: re-delivered to a driver's new socket.
    pub offers: Arc<Offers>,
    /// Makes and checks the `pid`s of Socket.IO's connection state recovery.
    pub pid_key: PidKey,
}

impl Services {
    pub fn new(
        gate: Gatekeeper,
        state: Arc<dyn StateEngine>,
        lifetime: LifetimeSettings,
        deadlines: Arc<Deadlines>,
        recovery: Option<Arc<dyn RecoveryLog>>,
        offers: Arc<Offers>,
        pid_key: PidKey,
    ) -> Self {
        Self {
            gate,
            lifetime,
            deadlines,
            presence: Arc::new(LocalPresence::new(state.clone())),
            state,
            admin_throttle: AdminLocationThrottle::default(),
            unknown_events: AtomicU64::new(0),
            pending_handshakes: Semaphore::new(lifetime.max_pending_handshakes),
            recovery,
            offers,
            pid_key,
        }
    }
}
