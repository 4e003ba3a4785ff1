//! The memory engine's offers: held per driver until answered, closed or expired.

use super::*;
use crate::state::OfferStore;

#[async_trait]
impl OfferStore for MemoryState {
    async fn hold_offer(&self, driver: &str, offer: &HeldOffer) -> Result<bool, StateError> {
        let mut inner = self.lock();
        let now = crate::clock::now_ms();
        let held = inner.offers.entry(driver.to_owned()).or_default();
        held.retain(|(o, _)| o.expires_at_ms > now);
        if held
            .iter()
            .any(|(o, _)| o.offer.offer_id == offer.offer.offer_id)
        {
            return Ok(false);
        }
        held.push((offer.clone(), None));
        Ok(true)
    }

    async fn pending_offers(
        &self,
        driver: &str,
        now_ms: u64,
    ) -> Result<Vec<HeldOffer>, StateError> {
        let inner = self.lock();
        Ok(inner.offers.get(driver).map_or_else(Vec::new, |held| {
            held.iter()
                .filter(|(o, outcome)| outcome.is_none() && o.expires_at_ms > now_ms)
                .map(|(o, _)| o.clone())
                .collect()
        }))
    }

    async fn answer_offer(
        &self,
        driver: &str,
        offer_id: &str,
        answer: OfferAnswer,
        now_ms: u64,
        _notice: &str,
    ) -> Result<Answered, StateError> {
        let mut inner = self.lock();
        Ok(match held_mut(&mut inner, driver, offer_id) {
            None => Answered::Gone,
            Some((_, Some(OfferOutcome::Answered(first)))) => Answered::Already(*first),
            Some((_, Some(OfferOutcome::Closed))) => Answered::Gone,
            Some((offer, _)) if offer.expires_at_ms <= now_ms => Answered::Gone,
            Some((_, outcome)) => {
                *outcome = Some(OfferOutcome::Answered(answer));
                Answered::First
            }
        })
    }

    async fn close_offer(
        &self,
        driver: &str,
        offer_id: &str,
    ) -> Result<Option<OfferAnswer>, StateError> {
        let mut inner = self.lock();
        Ok(match held_mut(&mut inner, driver, offer_id) {
            Some((_, Some(OfferOutcome::Answered(first)))) => Some(*first),
            Some((_, outcome)) => {
                *outcome = Some(OfferOutcome::Closed);
                None
            }
            None => None,
        })
    }
}

/// Offer `offer_id` of `driver`, with its outcome, while it is kept.
fn held_mut<'a>(
    inner: &'a mut Inner,
    driver: &str,
    offer_id: &str,
) -> Option<&'a mut (HeldOffer, Option<OfferOutcome>)> {
    inner
        .offers
        .get_mut(driver)?
        .iter_mut()
        .find(|(o, _)| o.offer.offer_id == offer_id)
}
