//! Drivers: status, positions, the geo search, the location stream.

use super::*;

contract!(
    status_changes_return_the_previous_status,
    positions_are_stored_rate_limited_and_read_back,
    nearby_finds_online_drivers_nearest_first_across_shards,
    accepted_positions_reach_the_stream_in_order,
);

async fn status_changes_return_the_previous_status(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    let d = driver(&world, "d1");
    assert_eq!(e.driver_state(&d).await?, None, "never seen");
    assert_eq!(e.set_status(&d, DriverStatus::Online, &at(1)).await?, None);
    assert_eq!(
        e.set_status(&d, DriverStatus::Busy, &at(2)).await?,
        Some(DriverStatus::Online)
    );
    let state = e.driver_state(&d).await?.expect("seen");
    assert_eq!(state.status, DriverStatus::Busy);
    assert!(!state.connected);
    assert_eq!(state.last_location, None);
    assert_eq!(state.active_trip_id, None);
    Ok(())
}

async fn positions_are_stored_rate_limited_and_read_back(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    let d = driver(&world, "d1");
    let mut outcomes = Vec::new();
    for n in 0..5 {
        outcomes.push(
            e.record_location(&d, &position(48.85 + f64::from(n) * 1e-4, 2.35, n))
                .await?,
        );
    }
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, LocationOutcome::Accepted { active_trip: None }))
        .count();
    let limited = outcomes
        .iter()
        .filter(|o| **o == LocationOutcome::RateLimited)
        .count();
    // Three a second: the window may roll over once during the five calls.
    assert!((3..=5).contains(&accepted), "{outcomes:?}");
    assert_eq!(accepted + limited, 5);
    let state = e.driver_state(&d).await?.expect("seen");
    assert_eq!(
        state.status,
        DriverStatus::Offline,
        "a position alone sets no status"
    );
    let last = state.last_location.expect("a position");
    assert_eq!(last.heading, Some(90.0));
    assert_eq!(last.speed, None);
    assert_eq!(last.accuracy, Some(5.5));
    assert!(last.recorded_at.is_some());
    assert!((last.lat - 48.85).abs() < 1e-3);
    Ok(())
}

async fn nearby_finds_online_drivers_nearest_first_across_shards(
    world: World,
) -> Result<(), StateError> {
    let e = world.engine("n1");
    // 40 drivers spread over every shard, 100 m apart going north; every other one ONLINE.
    for i in 0..40u32 {
        let d = driver(&world, &format!("near-{i}"));
        let status = if i % 2 == 0 {
            DriverStatus::Online
        } else {
            DriverStatus::Busy
        };
        e.set_status(&d, status, &at(1)).await?;
        let p = position(10.0 + f64::from(i) * 0.0009, 20.0, 1);
        assert!(matches!(
            e.record_location(&d, &p).await?,
            LocationOutcome::Accepted { .. }
        ));
    }
    // A driver who went OFFLINE after reporting is not found.
    let gone = driver(&world, "near-0");
    e.set_status(&gone, DriverStatus::Offline, &at(2)).await?;
    let found = e
        .drivers_nearby(&NearbyQuery {
            lat: 10.0,
            lng: 20.0,
            radius_m: 2_000.0,
            limit: 5,
        })
        .await?;
    let ids: Vec<&str> = found.iter().map(|n| n.driver_id.as_str()).collect();
    let expected: Vec<String> = [2, 4, 6, 8, 10]
        .iter()
        .map(|i| driver(&world, &format!("near-{i}")))
        .collect();
    assert_eq!(ids, expected);
    assert!(found.windows(2).all(|w| w[0].distance_m <= w[1].distance_m));
    assert!(
        (found[0].distance_m - 200.0).abs() < 5.0,
        "{}",
        found[0].distance_m
    );
    assert!(
        found
            .iter()
            .all(|n| n.status == DriverStatus::Online && !n.at.is_empty())
    );
    // Going ONLINE puts a driver with a position back at once.
    e.set_status(&gone, DriverStatus::Online, &at(3)).await?;
    let found = e
        .drivers_nearby(&NearbyQuery {
            lat: 10.0,
            lng: 20.0,
            radius_m: 50.0,
            limit: 5,
        })
        .await?;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].driver_id, gone);
    Ok(())
}

async fn accepted_positions_reach_the_stream_in_order(world: World) -> Result<(), StateError> {
    let Some(client) = &world.client else {
        return Ok(());
    };
    use fred::{
        interfaces::ClientLike,
        types::{ClusterHash, CustomCommand, Value},
    };
    let e = world.engine("n1");
    let drivers: Vec<String> = (0..20).map(|i| driver(&world, &format!("s{i}"))).collect();
    let reports = drivers.iter().enumerate().map(|(i, d)| {
        let e = e.clone();
        async move {
            e.record_location(d, &position(1.0 + i as f64 * 1e-3, 2.0, 1))
                .await
        }
    });
    for outcome in futures::future::join_all(reports).await {
        assert!(matches!(outcome?, LocationOutcome::Accepted { .. }));
    }
    // One driver again, past the rate of 3/s: what is limited is not in the stream either.
    let mut expected_at = vec![at(1)];
    for n in 10..14 {
        if e.record_location(&drivers[0], &position(1.0, 2.0, n))
            .await?
            != LocationOutcome::RateLimited
        {
            expected_at.push(at(n));
        }
    }
    let xrange = CustomCommand::new_static("XRANGE", ClusterHash::FirstKey, false);
    let key = format!("{}:driver-locations", world.prefix);
    let entries: Value = client.custom(xrange, vec![key.as_str(), "-", "+"]).await?;
    let fields: Vec<Vec<String>> = entries
        .into_array()
        .into_iter()
        .map(|entry| {
            let mut parts = entry.into_array();
            parts
                .pop()
                .expect("fields")
                .into_array()
                .iter()
                .map(|v| v.as_string().unwrap_or_default())
                .collect()
        })
        .collect();
    assert_eq!(fields.len(), 20 + expected_at.len() - 1);
    let first_driver_at: Vec<&str> = fields
        .iter()
        .filter(|f| f[1] == drivers[0])
        .map(|f| f[13].as_str())
        .collect();
    assert_eq!(
        first_driver_at, expected_at,
        "one driver's positions in the order accepted"
    );
    let ids: std::collections::HashSet<&str> = fields.iter().map(|f| f[1].as_str()).collect();
    assert_eq!(ids.len(), 20);
    assert_eq!(
        fields[0]
            .iter()
            .step_by(2)
            .map(String::as_str)
            .collect::<Vec<_>>(),
        [
            "driverId",
            "lat",
            "lng",
            "heading",
            "speed",
            "recordedAt",
            "at"
        ]
    );
    assert_eq!(fields[0][7], "90", "heading");
    assert_eq!(fields[0][9], "", "absent speed");
    Ok(())
}
