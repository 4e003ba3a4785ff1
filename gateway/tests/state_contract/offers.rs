//! Offers held for a driver: one outcome each (the first answer, or the close), pending while
//! open, and presence's grace counting as reachable for them.

use gateway::{
    clock::now_ms,
    state::{Answered, HeldOffer},
};
use shared::events::{OfferAnswer, TripOffer};

use super::*;

contract!(
    an_offer_has_one_answer_the_first,
    an_offer_closed_unanswered_takes_no_answer,
    an_expired_offer_is_neither_pending_nor_answered,
    a_repeated_offer_is_held_once,
    a_driver_between_two_connections_is_reachable,
);

fn held(id: &str, expires_in_ms: u64) -> HeldOffer {
    HeldOffer {
        offer: TripOffer {
            offer_id: id.into(),
            trip_id: format!("trip-{id}"),
            expires_at: "2026-12-02T08:00:15.000Z".into(),
            data: serde_json::json!({ "fare": 12.5 }),
        },
        expires_at_ms: now_ms() + expires_in_ms,
    }
}

const YES: OfferAnswer = OfferAnswer { accept: true };
const NO: OfferAnswer = OfferAnswer { accept: false };

async fn an_offer_has_one_answer_the_first(world: World) -> Result<(), StateError> {
    let (e, other) = (world.engine("n1"), world.engine("n2"));
    let d = driver(&world, "d1");
    let offer = held("o1", 15_000);
    assert!(e.hold_offer(&d, &offer).await?);
    assert_eq!(
        e.pending_offers(&d, now_ms()).await?,
        std::slice::from_ref(&offer)
    );
    assert_eq!(
        e.answer_offer(&d, "o1", YES, now_ms(), "").await?,
        Answered::First
    );
    // From another replica too, and to the close: the first answer.
    assert_eq!(
        other.answer_offer(&d, "o1", NO, now_ms(), "").await?,
        Answered::Already(YES)
    );
    assert!(
        e.pending_offers(&d, now_ms()).await?.is_empty(),
        "answered: not pending"
    );
    assert_eq!(e.close_offer(&d, "o1").await?, Some(YES));
    Ok(())
}

async fn an_offer_closed_unanswered_takes_no_answer(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    let d = driver(&world, "d1");
    assert!(e.hold_offer(&d, &held("o2", 15_000)).await?);
    assert_eq!(e.close_offer(&d, "o2").await?, None);
    assert_eq!(
        e.answer_offer(&d, "o2", YES, now_ms(), "").await?,
        Answered::Gone
    );
    assert!(e.pending_offers(&d, now_ms()).await?.is_empty());
    assert_eq!(
        e.answer_offer(&d, "never-held", YES, now_ms(), "").await?,
        Answered::Gone
    );
    Ok(())
}

async fn an_expired_offer_is_neither_pending_nor_answered(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    let d = driver(&world, "d1");
    let offer = held("o3", 1_000);
    assert!(e.hold_offer(&d, &offer).await?);
    let later = offer.expires_at_ms + 1;
    assert!(e.pending_offers(&d, later).await?.is_empty());
    assert_eq!(
        e.answer_offer(&d, "o3", YES, later, "").await?,
        Answered::Gone
    );
    Ok(())
}

async fn a_repeated_offer_is_held_once(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    let d = driver(&world, "d1");
    assert!(e.hold_offer(&d, &held("o4", 15_000)).await?);
    assert!(!e.hold_offer(&d, &held("o4", 15_000)).await?, "a repeat");
    assert!(e.hold_offer(&d, &held("o5", 20_000)).await?);
    let ids: Vec<String> = e
        .pending_offers(&d, now_ms())
        .await?
        .into_iter()
        .map(|o| o.offer.offer_id)
        .collect();
    assert_eq!(ids, ["o4", "o5"], "soonest to expire first");
    Ok(())
}

async fn a_driver_between_two_connections_is_reachable(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    let d = driver(&world, "d1");
    e.renew_lease(&NodeStats {
        node_id: "n1".into(),
        ..NodeStats::default()
    })
    .await?;
    assert!(!e.is_reachable(&d).await?, "never connected");
    e.presence_opened(&d).await?;
    assert!(e.is_present(&d).await? && e.is_reachable(&d).await?);
    e.presence_closed(&d).await?;
    assert!(!e.is_present(&d).await?, "no socket");
    assert!(e.is_reachable(&d).await?, "within the grace");
    Ok(())
}
