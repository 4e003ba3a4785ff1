//! The `RecoveryLog` contract, on the same three stores: offsets and positions are kept, refused
//! and replayed alike in memory, on one Redis and on a Redis Cluster (recovery.md).

use std::time::Duration;

use fred::interfaces::KeysInterface;
use gateway::{
    config::RecoverySettings,
    recovery::{
        Offset, UserRoom,
        log::{MemoryLog, RecoveryLog, Resume},
    },
    state::{
        StateError,
        keys::{Keys, room_shard},
    },
};
use serde_json::{Value, json};
use shared::namespace::Namespace;

use super::topology::{Topology, World};

contract!(
    events_after_a_kept_offset_are_replayed_in_order,
    a_position_recovers_what_follows_it_in_its_room_only,
    a_position_after_which_an_event_was_trimmed_is_refused,
    a_position_out_of_the_window_is_refused,
    a_position_from_a_store_that_lost_its_data_is_refused,
    an_offset_older_than_the_window_is_refused_while_its_room_is_active,
    a_push_to_rooms_of_many_shards_is_kept_in_each_room,
    a_catch_up_from_a_quiet_room_reads_what_followed_the_hole,
    a_catch_up_across_a_store_that_lost_its_data_is_refused,
);

/// A log as a replica holds it, and what keeps it running (the memory log's feed).
struct Log {
    log: Box<dyn RecoveryLog>,
    _feed: Option<tokio::sync::mpsc::UnboundedReceiver<gateway::recovery::Entry>>,
}

fn log(world: &World, window_ms: u64, max_events: usize) -> Log {
    let settings = RecoverySettings {
        window: Duration::from_millis(window_ms),
        max_events,
    };
    match &world.client {
        None => {
            let (log, feed) = MemoryLog::new(settings);
            Log {
                log: Box::new(log),
                _feed: Some(feed),
            }
        }
        Some(client) => Log {
            log: Box::new(gateway::recovery::log::RedisLog::new(
                client.clone(),
                Keys::new(&world.prefix),
                settings,
            )),
            _feed: None,
        },
    }
}

fn room(world: &World, name: &str) -> UserRoom {
    UserRoom {
        ns: Namespace::Passengers,
        room: format!("passenger:{}-{name}", &world.prefix[9..17]),
    }
}

async fn append(log: &Log, room: &UserRoom, n: u32) -> Result<Offset, StateError> {
    log.log
        .append(room, "promo:offer", &json!({ "n": n }))
        .await
}

/// What resuming from `from` replays (the `n`s), or `None` when `from` is not kept.
async fn replayed(
    log: &Log,
    room: &UserRoom,
    from: Offset,
) -> Result<Option<Vec<Value>>, StateError> {
    let Resume { missed, .. } = log.log.resume(room, Some(from)).await?;
    Ok(missed.map(|m| m.into_iter().map(|e| e.data["n"].clone()).collect()))
}

async fn events_after_a_kept_offset_are_replayed_in_order(world: World) -> Result<(), StateError> {
    let log = log(&world, 60_000, 3);
    let a = room(&world, "a");
    let mut offsets = Vec::new();
    for n in 0..4 {
        offsets.push(append(&log, &a, n).await?);
    }
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    assert_eq!(
        replayed(&log, &a, offsets[1]).await?,
        Some(vec![json!(2), json!(3)])
    );
    assert_eq!(
        replayed(&log, &a, offsets[3]).await?,
        Some(vec![]),
        "up to date"
    );
    assert_eq!(replayed(&log, &a, offsets[0]).await?, None, "trimmed");
    let resumed = log.log.resume(&a, None).await?;
    assert_eq!((resumed.missed, resumed.head), (None, offsets[3]));
    assert_eq!(
        replayed(&log, &room(&world, "b"), offsets[1]).await?,
        None,
        "another room"
    );
    Ok(())
}

async fn a_position_recovers_what_follows_it_in_its_room_only(
    world: World,
) -> Result<(), StateError> {
    let log = log(&world, 60_000, 10);
    let (a, b) = (room(&world, "a"), room(&world, "b"));
    let position = log.log.resume(&a, None).await?.head;
    assert!(position.is_position_of(&a.room), "{position}");
    assert_eq!(replayed(&log, &a, position).await?, Some(vec![]));
    let first = append(&log, &a, 1).await?;
    assert!(position < first, "{position} < {first}");
    append(&log, &a, 2).await?;
    assert_eq!(
        replayed(&log, &a, position).await?,
        Some(vec![json!(1), json!(2)])
    );
    // Another user's position, or this one's in another room: not theirs.
    let theirs = log.log.resume(&b, None).await?.head;
    assert_eq!(replayed(&log, &a, theirs).await?, None);
    assert_eq!(replayed(&log, &b, position).await?, None);
    Ok(())
}

async fn a_position_after_which_an_event_was_trimmed_is_refused(
    world: World,
) -> Result<(), StateError> {
    let log = log(&world, 60_000, 2);
    let a = room(&world, "a");
    let position = log.log.resume(&a, None).await?.head;
    append(&log, &a, 1).await?;
    append(&log, &a, 2).await?;
    assert_eq!(
        replayed(&log, &a, position).await?,
        Some(vec![json!(1), json!(2)])
    );
    append(&log, &a, 3).await?;
    assert_eq!(replayed(&log, &a, position).await?, None, "1 was trimmed");
    Ok(())
}

async fn a_position_out_of_the_window_is_refused(world: World) -> Result<(), StateError> {
    let log = log(&world, 300, 10);
    let a = room(&world, "a");
    let position = log.log.resume(&a, None).await?.head;
    assert_eq!(replayed(&log, &a, position).await?, Some(vec![]));
    tokio::time::sleep(Duration::from_millis(350)).await;
    // An event kept after it could have expired since.
    assert_eq!(replayed(&log, &a, position).await?, None);
    Ok(())
}

/// The log of `before` after its store lost what it kept of `room`: Redis restarted empty (this
/// test's keys deleted), or the single replica restarted (a new memory log).
async fn lose_data(world: &World, before: Log, room: &UserRoom) -> Result<Log, StateError> {
    match (&world.client, world.topology) {
        (Some(client), Topology::Redis | Topology::Cluster) => {
            let keys = Keys::new(&world.prefix);
            let _: i64 = client.del(keys.recovery_stream(&room.room)).await?;
            let _: i64 = client
                .del(keys.recovery_since(room_shard(&room.room)))
                .await?;
            Ok(before)
        }
        _ => Ok(log(world, 60_000, 10)),
    }
}

async fn a_position_from_a_store_that_lost_its_data_is_refused(
    world: World,
) -> Result<(), StateError> {
    let before = log(&world, 60_000, 10);
    let a = room(&world, "a");
    let position = before.log.resume(&a, None).await?.head;
    append(&before, &a, 1).await?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let after = lose_data(&world, before, &a).await?;
    append(&after, &a, 2).await?;
    assert_eq!(replayed(&after, &a, position).await?, None, "1 was lost");
    Ok(())
}

async fn an_offset_older_than_the_window_is_refused_while_its_room_is_active(
    world: World,
) -> Result<(), StateError> {
    let log = log(&world, 400, 10);
    let a = room(&world, "a");
    let old = append(&log, &a, 1).await?;
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The room stays alive (its stream does not expire), but 1 is out of the window by then.
    let recent = append(&log, &a, 2).await?;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        replayed(&log, &a, old).await?,
        None,
        "1 is out of the window"
    );
    assert_eq!(replayed(&log, &a, recent).await?, Some(vec![]));
    Ok(())
}

async fn a_push_to_rooms_of_many_shards_is_kept_in_each_room(
    world: World,
) -> Result<(), StateError> {
    let log = log(&world, 60_000, 10);
    let rooms: Vec<UserRoom> = (0..12).map(|i| room(&world, &format!("r{i}"))).collect();
    let shards: std::collections::BTreeSet<u32> =
        rooms.iter().map(|r| room_shard(&r.room)).collect();
    assert!(
        shards.len() > 1,
        "the rooms span several shards: {shards:?}"
    );
    let mut positions = Vec::new();
    for r in &rooms {
        positions.push(log.log.resume(r, None).await?.head);
    }
    let names: Vec<String> = rooms.iter().map(|r| r.room.clone()).collect();
    let kept = log
        .log
        .append_all(
            Namespace::Passengers,
            &names,
            "promo:offer",
            &json!({ "n": 7 }),
        )
        .await;
    assert_eq!(kept.len(), rooms.len(), "an answer per room");
    for ((r, position), kept) in rooms.iter().zip(positions).zip(kept) {
        let offset = kept?;
        assert!(position < offset, "{}: {position} < {offset}", r.room);
        assert_eq!(
            replayed(&log, r, position).await?,
            Some(vec![json!(7)]),
            "{}",
            r.room
        );
        assert_eq!(replayed(&log, r, offset).await?, Some(vec![]), "{}", r.room);
    }
    Ok(())
}

/// What a connected socket standing at `from` catches up (the `n`s) after a hole that began at
/// most `lookback` ago, or `None` when it cannot.
async fn caught_up(
    log: &Log,
    room: &UserRoom,
    from: Offset,
    lookback: Duration,
) -> Result<Option<Vec<Value>>, StateError> {
    let Resume { missed, .. } = log.log.catch_up(room, from, lookback).await?;
    Ok(missed.map(|m| m.into_iter().map(|e| e.data["n"].clone()).collect()))
}

async fn a_catch_up_from_a_quiet_room_reads_what_followed_the_hole(
    world: World,
) -> Result<(), StateError> {
    let log = log(&world, 400, 10);
    let a = room(&world, "a");
    let old = append(&log, &a, 1).await?;
    // The socket got 1, then its room was quiet for longer than the window.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(replayed(&log, &a, old).await?, None, "a reconnect: too old");
    // A hole of the feed began 100 ms ago; 2 was kept during it.
    append(&log, &a, 2).await?;
    let lookback = Duration::from_millis(100);
    assert_eq!(
        caught_up(&log, &a, old, lookback).await?,
        Some(vec![json!(2)])
    );
    // A recent offset reads after itself, as a resume does.
    let recent = append(&log, &a, 3).await?;
    append(&log, &a, 4).await?;
    assert_eq!(
        caught_up(&log, &a, recent, Duration::from_millis(300)).await?,
        Some(vec![json!(4)])
    );
    Ok(())
}

async fn a_catch_up_across_a_store_that_lost_its_data_is_refused(
    world: World,
) -> Result<(), StateError> {
    let before = log(&world, 60_000, 10);
    let a = room(&world, "a");
    let got = append(&before, &a, 1).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = lose_data(&world, before, &a).await?;
    append(&after, &a, 2).await?;
    // Whether 1 was followed by entries that were lost with the data cannot be told.
    assert_eq!(
        caught_up(&after, &a, got, Duration::from_millis(30)).await?,
        None
    );
    assert_eq!(
        caught_up(&after, &a, got, Duration::from_millis(10_000)).await?,
        None
    );
    Ok(())
}
