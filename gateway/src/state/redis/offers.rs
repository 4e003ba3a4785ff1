//! The Redis engine's offers: a hash per driver (its shard's slot), the first outcome set with
//! `HSETNX`, and the answer told to every replica on the shard's channel by the same script.

use std::collections::HashMap;

use super::*;
use crate::state::OfferStore;

/// How long an offer is kept after its expiry, so a dispatch closing it late still finds it.
const OFFERS_KEPT_MS: u64 = 60_000;

/// The outcome of an offer closed unanswered.
const CLOSED: &str = "closed";

impl RedisState {
    /// Runs `offer_answer.lua`: records `outcome` unless the offer has one.
    async fn settle(
        &self,
        driver: &str,
        offer_id: &str,
        outcome: &str,
        now_ms: Option<u64>,
        notice: &str,
    ) -> Result<Answered, StateError> {
        let reply = self
            .run(
                &self.scripts.offer_answer,
                vec![self.keys.offers(driver)],
                vec![
                    offer_id.to_owned(),
                    outcome.to_owned(),
                    now_ms.map(|n| n.to_string()).unwrap_or_default(),
                    self.keys.driver_offers_channel(driver),
                    notice.to_owned(),
                ],
            )
            .await?
            .into_array();
        let word = reply.first().and_then(text).unwrap_or_default();
        Ok(match word.as_str() {
            "first" => Answered::First,
            "already" => match reply.get(1).and_then(text).as_deref() {
                Some(CLOSED) | None => Answered::Gone,
                Some(first) => serde_json::from_str(first)
                    .map(Answered::Already)
                    .map_err(|_| StateError::Data("an offer's answer that is not one".into()))?,
            },
            _ => Answered::Gone,
        })
    }
}

#[async_trait]
impl OfferStore for RedisState {
    async fn hold_offer(&self, driver: &str, offer: &HeldOffer) -> Result<bool, StateError> {
        let json = serde_json::to_string(&offer.offer)
            .map_err(|e| StateError::Data(format!("an offer that is not JSON: {e}")))?;
        let held = self
            .run(
                &self.scripts.offer_hold,
                vec![self.keys.offers(driver)],
                vec![
                    offer.offer.offer_id.clone(),
                    json,
                    offer.expires_at_ms.to_string(),
                    crate::clock::now_ms().to_string(),
                    OFFERS_KEPT_MS.to_string(),
                ],
            )
            .await?;
        Ok(held.as_i64() == Some(1))
    }

    async fn pending_offers(
        &self,
        driver: &str,
        now_ms: u64,
    ) -> Result<Vec<HeldOffer>, StateError> {
        let fields = self
            .run(&self.offers_read, vec![self.keys.offers(driver)], vec![])
            .await?;
        let fields: Vec<String> = fields
            .into_array()
            .iter()
            .map(|v| text(v).unwrap_or_default())
            .collect();
        // HGETALL: name, value, name, value, ...
        let fields: HashMap<&str, &str> = fields
            .chunks_exact(2)
            .map(|pair| (pair[0].as_str(), pair[1].as_str()))
            .collect();
        let mut pending = Vec::new();
        for (name, offer) in &fields {
            let Some(id) = name.strip_prefix("o:") else {
                continue;
            };
            let expires_at_ms = fields
                .get(format!("e:{id}").as_str())
                .and_then(|e| e.parse().ok())
                .unwrap_or(0);
            if expires_at_ms <= now_ms || fields.contains_key(format!("a:{id}").as_str()) {
                continue;
            }
            let offer = serde_json::from_str(offer)
                .map_err(|_| StateError::Data("a held offer that is not one".into()))?;
            pending.push(HeldOffer {
                offer,
                expires_at_ms,
            });
        }
        pending.sort_by_key(|o| o.expires_at_ms);
        Ok(pending)
    }

    async fn answer_offer(
        &self,
        driver: &str,
        offer_id: &str,
        answer: OfferAnswer,
        now_ms: u64,
        notice: &str,
    ) -> Result<Answered, StateError> {
        let outcome = serde_json::to_string(&answer).unwrap_or_default();
        self.settle(driver, offer_id, &outcome, Some(now_ms), notice)
            .await
    }

    async fn close_offer(
        &self,
        driver: &str,
        offer_id: &str,
    ) -> Result<Option<OfferAnswer>, StateError> {
        Ok(
            match self.settle(driver, offer_id, CLOSED, None, "").await? {
                Answered::Already(first) => Some(first),
                Answered::First | Answered::Gone => None,
            },
        )
    }
}
