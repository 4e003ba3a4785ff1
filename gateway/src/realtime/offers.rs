//! Trip offers held until answered or expired (docs/events.md, "Trip offers"). Dispatch's offer
//! is held in the state store for the driver; it goes to every socket the driver has, and again
//! to any socket of theirs that connects before it expires (on any replica, right after
//! `hello`). The first well-formed answer of any socket is recorded once for the cluster and is
//! the one dispatch gets; when the offer has its outcome (that answer, or its close at expiry)
//! every socket of the driver gets `trip:offer_withdrawn`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use shared::events::{OfferAnswer, OfferWithdrawn, TRIP_OFFER_WITHDRAWN, TripOffer};
use socketioxide::{adapter::Adapter, extract::SocketRef};
use tokio::sync::oneshot;

use super::{
    deliver::{ClusterUnreachable, Recipient, offer_to},
    io::Delivery,
};
use crate::{
    clock::now_ms,
    state::{Answered, HeldOffer, StateEngine, StateError},
    telemetry::metrics,
};

/// What replicas tell each other when an offer is answered (the offers channel): the waiting
/// dispatch, wherever it is, has its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferNotice {
    pub driver_id: String,
    pub offer_id: String,
    pub answer: OfferAnswer,
}

/// Why an offer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("the offer could not be held: {0}")]
    State(#[from] StateError),
    #[error(transparent)]
    Cluster(#[from] ClusterUnreachable),
}

/// The offers of this replica: dispatches waiting here, and answers heard here.
pub struct Offers {
    state: Arc<dyn StateEngine>,
    /// Dispatches waiting on this replica for their offer's answer, by (driver, offer id): a
    /// repeated dispatch of one offer waits for the same answer.
    waiting: Mutex<HashMap<OfferKey, Waiters>>,
}

/// An offer: its driver and its id.
type OfferKey = (String, String);

/// The dispatches of one offer waiting on this replica.
type Waiters = Vec<oneshot::Sender<OfferAnswer>>;

impl Offers {
    pub fn new(state: Arc<dyn StateEngine>) -> Self {
        Self {
            state,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<OfferKey, Waiters>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `offer` for `driver`, sends it to every socket of theirs, and waits for its one
    /// outcome: the first answer of any of their sockets (one that connects meanwhile too), or
    /// `None` once it expired unanswered.
    pub async fn dispatch(
        &self,
        delivery: &Delivery,
        driver: &str,
        offer: TripOffer,
        expires_in: Duration,
    ) -> Result<Option<OfferAnswer>, OfferError> {
        let key = (driver.to_owned(), offer.offer_id.clone());
        let (answered, answer) = oneshot::channel();
        self.waiting()
            .entry(key.clone())
            .or_default()
            .push(answered);
        let waited = self
            .wait(delivery, driver, &offer, expires_in, answer)
            .await;
        self.forget(&key);
        let outcome = match waited {
            Ok(Some(answer)) => Some(answer),
            // Closed unanswered, unless an answer was recorded just before: that one is it.
            Ok(None) => self.state.close_offer(driver, &offer.offer_id).await?,
            Err(error) => return Err(error),
        };
        let withdrawn = OfferWithdrawn {
            offer_id: offer.offer_id,
            trip_id: offer.trip_id,
            reason: if outcome.is_some() {
                "answered"
            } else {
                "expired"
            }
            .into(),
        };
        let to = Recipient::Driver(driver.to_owned());
        if let Err(error) = delivery.send(&to, TRIP_OFFER_WITHDRAWN, &withdrawn).await {
            tracing::warn!(%error, "offer withdrawn on this replica only");
        }
        Ok(outcome)
    }

    /// A dispatch is done waiting (its receiver is gone): its sender goes, a repeat's stays.
    fn forget(&self, key: &OfferKey) {
        let mut waiting = self.waiting();
        if let Some(senders) = waiting.get_mut(key) {
            senders.retain(|sender| !sender.is_closed());
            if senders.is_empty() {
                waiting.remove(key);
            }
        }
    }

    /// Holds the offer, sends it, and takes the first answer: from the sockets it was sent to,
    /// or told by the replica that recorded it (a socket that connected there meanwhile).
    async fn wait(
        &self,
        delivery: &Delivery,
        driver: &str,
        offer: &TripOffer,
        expires_in: Duration,
        told: oneshot::Receiver<OfferAnswer>,
    ) -> Result<Option<OfferAnswer>, OfferError> {
        let held = HeldOffer {
            offer: offer.clone(),
            expires_at_ms: now_ms() + u64::try_from(expires_in.as_millis()).unwrap_or(u64::MAX),
        };
        // Held first: a socket connecting from now on is sent it, and its answer finds it.
        self.state.hold_offer(driver, &held).await?;
        let mut answers = delivery.io.offer(driver, offer, expires_in).await?;
        let heard = async {
            while let Some(answer) = answers.next().await {
                if let Some(first) = self.answered(driver, &offer.offer_id, answer).await {
                    return Some(first);
                }
            }
            // Every socket sent to answered badly or went: wait for one that connects.
            std::future::pending().await
        };
        Ok(tokio::select! {
            first = heard => first,
            told = told => told.ok(),
            () = tokio::time::sleep(expires_in) => None,
        })
    }

    /// An answer from one of `driver`'s sockets: recorded if it is the offer's first. Returns
    /// the offer's answer when it has one (this one or an earlier one); `None` once it expired.
    pub async fn answered(
        &self,
        driver: &str,
        offer_id: &str,
        answer: OfferAnswer,
    ) -> Option<OfferAnswer> {
        let notice = OfferNotice {
            driver_id: driver.to_owned(),
            offer_id: offer_id.to_owned(),
            answer,
        };
        let notice_text = serde_json::to_string(&notice).unwrap_or_default();
        let recorded = self
            .state
            .answer_offer(driver, offer_id, answer, now_ms(), &notice_text)
            .await;
        match recorded {
            Ok(Answered::First) => {
                self.resolve(notice);
                Some(answer)
            }
            Ok(Answered::Already(first)) => Some(first),
            Ok(Answered::Gone) => None,
            Err(error) => {
                // The store is away: the dispatch waiting here, if any, still takes it.
                metrics::redis_error("offer_answer");
                tracing::warn!(%error, "offer answer not recorded");
                self.resolve(notice);
                Some(answer)
            }
        }
    }

    /// An offer's first answer, recorded here or on another replica (the offers channel): the
    /// dispatch waiting on this replica for it, if any, has it.
    pub fn resolve(&self, notice: OfferNotice) {
        let key = (notice.driver_id, notice.offer_id);
        for waiting in self.waiting().remove(&key).into_iter().flatten() {
            let _ = waiting.send(notice.answer);
        }
    }

    /// A socket of `driver` connected: every offer still open goes to it, and its answer counts
    /// as any other's. The app may see an offer it was already sent: it carries `offerId`.
    pub async fn redeliver<A: Adapter>(self: &Arc<Self>, s: &SocketRef<A>, driver: &str) {
        let pending = match self.state.pending_offers(driver, now_ms()).await {
            Ok(pending) => pending,
            Err(error) => {
                metrics::redis_error("offers_pending");
                tracing::warn!(%error, "open offers not re-delivered: state unavailable");
                return;
            }
        };
        for held in pending {
            let left = Duration::from_millis(held.expires_at_ms.saturating_sub(now_ms()));
            let answer = offer_to(s, &held.offer, left);
            metrics::offer_redelivered();
            let (offers, driver) = (self.clone(), driver.to_owned());
            // Bounded by the offer's expiry (at most `MAX_EXPIRES_IN_MS`), like an event's ack.
            tokio::spawn(async move {
                if let Some(answer) = answer.await {
                    offers.answered(&driver, &held.offer.offer_id, answer).await;
                }
            });
        }
    }
}
