//! What the internal handlers share ([`InternalState`]), and what they act on once the replica
//! has started ([`Live`]).

use std::sync::Arc;

use super::error::ApiError;
use crate::{
    config::Secret,
    health::Health,
    realtime::{io::Delivery, offers::Offers, presence::LocalPresence, sessions::SessionEvents},
    state::StateEngine,
};

/// Largest request body of the internal API.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the internal handlers share.
#[derive(Clone)]
pub struct InternalState {
    pub token: Secret,
    pub health: Arc<Health>,
    /// Set once Socket.IO is up; until then the API answers 503.
    pub live: Arc<std::sync::OnceLock<Live>>,
    pub cluster: bool,
}

/// What the endpoints act on, once the replica has started.
#[derive(Clone)]
pub struct Live {
    /// Pushes to users, and this replica's Socket.IO server (`delivery.io`).
    pub delivery: Delivery,
    pub state: Arc<dyn StateEngine>,
    pub sessions: Arc<SessionEvents>,
    pub presence: Arc<LocalPresence>,
    /// Trip offers held until answered or expired.
    pub offers: Arc<Offers>,
}

impl InternalState {
    pub(super) fn live(&self) -> Result<&Live, ApiError> {
        self.live
            .get()
            .ok_or_else(|| ApiError::Unavailable("the replica is starting".into()))
    }
}
