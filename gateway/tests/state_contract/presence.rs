//! Presence: a driver OFFLINE once after the grace, replicas holding and releasing drivers.

use super::*;

contract!(
    a_driver_goes_offline_once_after_the_grace,
    a_socket_back_within_the_grace_keeps_the_driver,
    a_resync_releases_what_is_not_held,
    a_replica_drivers_survive_another_replica_closing,
    a_lapsed_replica_drivers_go_offline_after_the_grace,
    a_leaving_replica_drivers_start_their_grace,
);

async fn a_driver_goes_offline_once_after_the_grace(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    assert!(
        !e.renew_lease(&NodeStats {
            node_id: "n1".into(),
            ..Default::default()
        })
        .await?
            || !world.shared()
    );
    let d = driver(&world, "d1");
    e.presence_opened(&d).await?;
    e.set_status(&d, DriverStatus::Online, &at(1)).await?;
    assert!(e.is_present(&d).await?);
    assert!(e.driver_state(&d).await?.expect("seen").connected);
    e.presence_closed(&d).await?;
    assert!(!e.is_present(&d).await?);
    assert!(
        sweep_for(&*e, Duration::from_millis(150)).await.is_empty(),
        "not before the grace (300 ms)"
    );
    let changed = offline_within(&*e, Duration::from_secs(5), "the driver to go offline").await;
    assert_eq!(changed, std::slice::from_ref(&d));
    assert_eq!(
        e.driver_state(&d).await?.expect("seen").status,
        DriverStatus::Offline
    );
    assert!(
        sweep_for(&*e, Duration::from_millis(400)).await.is_empty(),
        "reported once"
    );
    Ok(())
}

async fn a_socket_back_within_the_grace_keeps_the_driver(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    e.renew_lease(&NodeStats::default()).await?;
    let d = driver(&world, "d1");
    e.presence_opened(&d).await?;
    e.set_status(&d, DriverStatus::Online, &at(1)).await?;
    e.presence_closed(&d).await?;
    e.presence_opened(&d).await?;
    assert!(sweep_for(&*e, Duration::from_millis(700)).await.is_empty());
    assert_eq!(
        e.driver_state(&d).await?.expect("seen").status,
        DriverStatus::Online
    );
    assert!(e.is_present(&d).await?);
    Ok(())
}

async fn a_resync_releases_what_is_not_held(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    e.renew_lease(&NodeStats::default()).await?;
    let (kept, left, new) = (
        driver(&world, "kept"),
        driver(&world, "left"),
        driver(&world, "new"),
    );
    for d in [&kept, &left] {
        e.presence_opened(d).await?;
        e.set_status(d, DriverStatus::Online, &at(1)).await?;
    }
    e.presence_resync(&[kept.clone(), new.clone()]).await?;
    assert!(e.is_present(&kept).await?);
    assert!(e.is_present(&new).await?);
    assert!(!e.is_present(&left).await?);
    assert_eq!(
        e.driver_state(&new).await?.expect("seen").status,
        DriverStatus::Offline
    );
    let changed = offline_within(
        &*e,
        Duration::from_secs(5),
        "the released driver to go offline",
    )
    .await;
    assert_eq!(changed, [left]);
    Ok(())
}

async fn a_replica_drivers_survive_another_replica_closing(world: World) -> Result<(), StateError> {
    if !world.shared() {
        return Ok(());
    }
    let (a, b) = (world.engine("a"), world.engine("b"));
    a.renew_lease(&NodeStats::default()).await?;
    b.renew_lease(&NodeStats::default()).await?;
    let d = driver(&world, "d1");
    a.presence_opened(&d).await?;
    b.presence_opened(&d).await?;
    a.set_status(&d, DriverStatus::Online, &at(1)).await?;
    a.presence_closed(&d).await?;
    assert!(b.is_present(&d).await?, "b still holds a socket");
    assert!(sweep_for(&*a, Duration::from_millis(600)).await.is_empty());
    b.presence_closed(&d).await?;
    assert_eq!(
        offline_within(&*a, Duration::from_secs(5), "the driver to go offline").await,
        [d]
    );
    Ok(())
}

async fn a_lapsed_replica_drivers_go_offline_after_the_grace(
    world: World,
) -> Result<(), StateError> {
    if !world.shared() {
        return Ok(());
    }
    let (a, b) = (world.engine("a"), world.engine("b"));
    a.renew_lease(&NodeStats {
        node_id: "a".into(),
        ..Default::default()
    })
    .await?;
    let (da, db) = (driver(&world, "on-a"), driver(&world, "on-b"));
    a.presence_opened(&da).await?;
    a.set_status(&da, DriverStatus::Online, &at(1)).await?;
    // b keeps renewing; a stops (it died): its lease lapses after 1 s.
    let started = Instant::now();
    let mut changed = Vec::new();
    while changed.is_empty() {
        b.renew_lease(&NodeStats {
            node_id: "b".into(),
            ..Default::default()
        })
        .await?;
        b.presence_opened(&db).await?;
        changed = b
            .expire_presence(true)
            .await?
            .into_iter()
            .map(|c| c.driver_id)
            .collect();
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "waited 6 s for a's driver to go offline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(changed, std::slice::from_ref(&da));
    // The lease (1 s) lapsed, then the grace (300 ms) ran.
    assert!(
        started.elapsed() >= Duration::from_millis(1_200),
        "{:?}",
        started.elapsed()
    );
    assert!(!b.is_present(&da).await?);
    assert!(b.is_present(&db).await?);
    let live: Vec<String> = b
        .live_nodes()
        .await?
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(live, ["b"]);
    // a comes back: its lease is new, and it re-asserts what it holds.
    assert!(!a.renew_lease(&NodeStats::default()).await?);
    a.presence_resync(std::slice::from_ref(&da)).await?;
    assert!(b.is_present(&da).await?);
    Ok(())
}

async fn a_leaving_replica_drivers_start_their_grace(world: World) -> Result<(), StateError> {
    if !world.shared() {
        return Ok(());
    }
    let (a, b) = (world.engine("a"), world.engine("b"));
    a.renew_lease(&NodeStats::default()).await?;
    b.renew_lease(&NodeStats::default()).await?;
    let d = driver(&world, "d1");
    a.presence_opened(&d).await?;
    a.set_status(&d, DriverStatus::Online, &at(1)).await?;
    a.release_lease().await?;
    assert!(!b.is_present(&d).await?);
    let changed = offline_within(
        &*b,
        Duration::from_secs(5),
        "the driver of the leaving replica to go offline",
    )
    .await;
    assert_eq!(changed, [d]);
    Ok(())
}
