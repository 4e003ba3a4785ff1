//! Trips: compare-and-set, and the driver bindings a write moves.

use super::*;

contract!(
    trips_are_compare_and_set_and_move_the_bindings,
    bindings_a_writer_left_unfinished_are_finished_by_the_next_reader,
);

async fn trips_are_compare_and_set_and_move_the_bindings(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    let (d1, d2, trip) = (
        driver(&world, "d1"),
        driver(&world, "d2"),
        driver(&world, "trip"),
    );
    let write = |expected, status, drv: &str, bind: Option<&str>, unbind: &[&str]| TripWrite {
        trip_id: trip.clone(),
        expected_version: expected,
        status,
        passenger_id: "p1".into(),
        driver_id: Some(drv.to_owned()),
        bind: bind.map(str::to_owned),
        unbind: unbind.iter().map(|s| s.to_string()).collect(),
    };
    assert_eq!(e.trip(&trip).await?, None);
    assert!(
        e.write_trip(&write(
            None,
            TripStatus::DriverAssigned,
            &d1,
            Some(&d1),
            &[]
        ))
        .await?
    );
    assert!(
        !e.write_trip(&write(
            None,
            TripStatus::DriverAssigned,
            &d1,
            Some(&d1),
            &[]
        ))
        .await?,
        "exists"
    );
    let stored = e.trip(&trip).await?.expect("stored");
    assert_eq!(
        (stored.status, stored.version),
        (TripStatus::DriverAssigned, 1)
    );
    assert_eq!(stored.driver_id.as_deref(), Some(d1.as_str()));
    let bound = ActiveTrip {
        trip_id: trip.clone(),
        passenger_id: "p1".into(),
    };
    assert_eq!(
        e.record_location(&d1, &position(1.0, 1.0, 1)).await?,
        LocationOutcome::Accepted {
            active_trip: Some(bound.clone())
        }
    );
    assert_eq!(
        e.driver_state(&d1).await?.expect("seen").active_trip_id,
        Some(trip.clone())
    );
    assert!(
        !e.write_trip(&write(Some(7), TripStatus::DriverArriving, &d1, None, &[]))
            .await?,
        "stale version"
    );
    // Reassignment: the binding moves.
    assert!(
        e.write_trip(&write(
            Some(1),
            TripStatus::DriverAssigned,
            &d2,
            Some(&d2),
            &[&d1]
        ))
        .await?
    );
    assert_eq!(
        e.record_location(&d1, &position(1.0, 1.0, 2)).await?,
        LocationOutcome::Accepted { active_trip: None }
    );
    assert_eq!(
        e.record_location(&d2, &position(1.0, 1.0, 2)).await?,
        LocationOutcome::Accepted {
            active_trip: Some(bound)
        }
    );
    assert!(
        e.write_trip(&write(Some(2), TripStatus::Completed, &d2, None, &[&d2]))
            .await?
    );
    assert_eq!(
        e.driver_state(&d2).await?.expect("seen").active_trip_id,
        None
    );
    assert_eq!(e.trip(&trip).await?.expect("stored").version, 3);
    Ok(())
}

/// A trip written but its driver binding not (Redis failed between the two steps on a cluster):
/// the next read of the trip (the backend's retry reads it first) finishes the binding.
async fn bindings_a_writer_left_unfinished_are_finished_by_the_next_reader(
    world: World,
) -> Result<(), StateError> {
    let Some(client) = &world.client else {
        return Ok(());
    };
    use fred::{
        interfaces::ClientLike,
        types::{ClusterHash, CustomCommand, Value},
    };
    let e = world.engine("n1");
    let (d, trip) = (driver(&world, "d1"), driver(&world, "trip"));
    let bindings = format!(r#"{{"trip":"{trip}","version":1,"passenger":"p1","bind":"{d}"}}"#);
    let hset = CustomCommand::new_static("HSET", ClusterHash::FirstKey, false);
    let key = format!("{}:trip:{trip}", world.prefix);
    let _: Value = client
        .custom(
            hset,
            vec![
                key.as_str(),
                "status",
                "DRIVER_ASSIGNED",
                "passengerId",
                "p1",
                "driverId",
                d.as_str(),
                "version",
                "1",
                "bindings",
                bindings.as_str(),
            ],
        )
        .await
        .expect("HSET");
    assert_eq!(
        e.record_location(&d, &position(1.0, 1.0, 1)).await?,
        LocationOutcome::Accepted { active_trip: None },
        "not bound yet"
    );
    let read = e.trip(&trip).await?.expect("stored");
    assert_eq!((read.status, read.version), (TripStatus::DriverAssigned, 1));
    assert_eq!(
        e.record_location(&d, &position(1.0, 1.0, 2)).await?,
        LocationOutcome::Accepted {
            active_trip: Some(ActiveTrip {
                trip_id: trip.clone(),
                passenger_id: "p1".into()
            })
        }
    );
    // Finished once: the next write of the trip starts from a clean record.
    let done = TripWrite {
        trip_id: trip.clone(),
        expected_version: Some(1),
        status: TripStatus::Completed,
        passenger_id: "p1".into(),
        driver_id: Some(d.clone()),
        bind: None,
        unbind: vec![d.clone()],
    };
    assert!(e.write_trip(&done).await?);
    assert_eq!(
        e.driver_state(&d).await?.expect("seen").active_trip_id,
        None
    );
    Ok(())
}
