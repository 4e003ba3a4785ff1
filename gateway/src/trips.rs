//! The trip lifecycle's rules: the decision table of events.md, as a pure function of the stored
//! trip and the event. Above storage: both state engines store what this decides; neither
//! decides anything itself.

use shared::events::TripStatus;

use crate::state::Trip;

/// A validated trip event from the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripEvent {
    pub status: TripStatus,
    pub passenger_id: String,
    pub driver_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TripDecision {
    /// Store and emit. `replaced_driver` is told the trip is CANCELLED for them (reassignment).
    Accept {
        status: TripStatus,
        driver_id: Option<String>,
        bind: Option<String>,
        unbind: Vec<String>,
        replaced_driver: Option<String>,
    },
    /// The current status again with the same driver: a backend retry, nothing to emit.
    Duplicate,
    /// A step backwards, after the end, or against the stored trip: 409.
    Conflict(String),
}

/// Lifecycle rank: a later step has a higher rank. CANCELLED is outside the order.
fn rank(status: TripStatus) -> u8 {
    match status {
        TripStatus::Requested => 0,
        TripStatus::DriverAssigned => 1,
        TripStatus::DriverArriving => 2,
        TripStatus::DriverArrived => 3,
        TripStatus::Started => 4,
        TripStatus::Completed => 5,
        TripStatus::Cancelled => 6,
    }
}

pub fn decide(current: Option<&Trip>, event: &TripEvent) -> TripDecision {
    let Some(current) = current else {
        // First event seen for a trip: accepted whatever it is.
        return accept(event.status, event.driver_id.clone(), None);
    };
    if current.passenger_id != event.passenger_id {
        return TripDecision::Conflict("passengerId does not match the trip".into());
    }
    // Later steps may omit the driver: it stays the trip's.
    let driver = event
        .driver_id
        .clone()
        .or_else(|| current.driver_id.clone());
    if event.status == current.status && driver == current.driver_id {
        return TripDecision::Duplicate;
    }
    if current.status.is_final() {
        return TripDecision::Conflict(format!("the trip is already {}", current.status.as_str()));
    }
    let driver_changes = current.driver_id.is_some() && driver != current.driver_id;
    match event.status {
        TripStatus::Cancelled => accept(TripStatus::Cancelled, current.driver_id.clone(), None),
        TripStatus::DriverAssigned
            if driver_changes && rank(current.status) < rank(TripStatus::Started) =>
        {
            // Reassignment: the binding moves to the new driver.
            accept(
                TripStatus::DriverAssigned,
                driver,
                current.driver_id.clone(),
            )
        }
        status if rank(status) <= rank(current.status) => TripDecision::Conflict(format!(
            "{} cannot follow {}",
            status.as_str(),
            current.status.as_str()
        )),
        _ if driver_changes => TripDecision::Conflict(
            "driverId does not match the trip; reassign with DRIVER_ASSIGNED".into(),
        ),
        status => accept(status, driver, None),
    }
}

fn accept(
    status: TripStatus,
    driver_id: Option<String>,
    replaced_driver: Option<String>,
) -> TripDecision {
    let (bind, mut unbind) = if status.is_final() {
        (None, driver_id.iter().cloned().collect())
    } else {
        (driver_id.clone(), Vec::new())
    };
    unbind.extend(replaced_driver.iter().cloned());
    TripDecision::Accept {
        status,
        driver_id,
        bind,
        unbind,
        replaced_driver,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TripStatus::*;

    fn trip(status: TripStatus, driver: Option<&str>) -> Trip {
        Trip {
            status,
            passenger_id: "p".into(),
            driver_id: driver.map(str::to_owned),
            version: 1,
        }
    }

    fn event(status: TripStatus, driver: Option<&str>) -> TripEvent {
        TripEvent {
            status,
            passenger_id: "p".into(),
            driver_id: driver.map(str::to_owned),
        }
    }

    fn outcome(current: Option<Trip>, e: TripEvent) -> &'static str {
        match decide(current.as_ref(), &e) {
            TripDecision::Accept {
                replaced_driver: Some(_),
                ..
            } => "reassign",
            TripDecision::Accept { .. } => "accept",
            TripDecision::Duplicate => "duplicate",
            TripDecision::Conflict(_) => "conflict",
        }
    }

    #[test]
    fn first_event_of_any_type_is_accepted() {
        for s in TripStatus::ALL {
            assert_eq!(outcome(None, event(s, Some("d"))), "accept", "{s:?}");
        }
    }

    #[test]
    fn later_steps_are_accepted_and_may_skip() {
        assert_eq!(
            outcome(
                Some(trip(Requested, None)),
                event(DriverAssigned, Some("d"))
            ),
            "accept"
        );
        assert_eq!(
            outcome(Some(trip(DriverAssigned, Some("d"))), event(Started, None)),
            "accept"
        );
        assert_eq!(
            outcome(Some(trip(Started, Some("d"))), event(Completed, Some("d"))),
            "accept"
        );
    }

    #[test]
    fn repeats_are_duplicates() {
        assert_eq!(
            outcome(
                Some(trip(DriverArriving, Some("d"))),
                event(DriverArriving, Some("d"))
            ),
            "duplicate"
        );
        assert_eq!(
            outcome(
                Some(trip(DriverArriving, Some("d"))),
                event(DriverArriving, None)
            ),
            "duplicate"
        );
        assert_eq!(
            outcome(Some(trip(Completed, Some("d"))), event(Completed, None)),
            "duplicate"
        );
    }

    #[test]
    fn reassignment_before_start_moves_the_binding() {
        let d = decide(
            Some(&trip(DriverArrived, Some("d1"))),
            &event(DriverAssigned, Some("d2")),
        );
        assert_eq!(
            d,
            TripDecision::Accept {
                status: DriverAssigned,
                driver_id: Some("d2".into()),
                bind: Some("d2".into()),
                unbind: vec!["d1".into()],
                replaced_driver: Some("d1".into()),
            }
        );
        assert_eq!(
            outcome(
                Some(trip(Started, Some("d1"))),
                event(DriverAssigned, Some("d2"))
            ),
            "conflict"
        );
    }

    #[test]
    fn backwards_and_after_the_end_conflict() {
        assert_eq!(
            outcome(
                Some(trip(DriverArrived, Some("d"))),
                event(DriverArriving, None)
            ),
            "conflict"
        );
        assert_eq!(
            outcome(Some(trip(Completed, Some("d"))), event(Cancelled, None)),
            "conflict"
        );
        assert_eq!(
            outcome(Some(trip(Cancelled, Some("d"))), event(Started, None)),
            "conflict"
        );
        assert_eq!(
            outcome(
                Some(trip(DriverArriving, Some("d1"))),
                event(Started, Some("d2"))
            ),
            "conflict"
        );
        let other_passenger = TripEvent {
            passenger_id: "q".into(),
            ..event(Started, None)
        };
        assert_eq!(
            outcome(Some(trip(DriverArriving, Some("d"))), other_passenger),
            "conflict"
        );
    }

    #[test]
    fn the_end_unbinds_the_driver() {
        let d = decide(Some(&trip(Started, Some("d"))), &event(Completed, None));
        assert!(
            matches!(d, TripDecision::Accept { bind: None, ref unbind, .. } if unbind == &["d".to_string()])
        );
        let d = decide(
            Some(&trip(DriverAssigned, Some("d"))),
            &event(Cancelled, None),
        );
        assert!(
            matches!(d, TripDecision::Accept { status: Cancelled, bind: None, ref unbind, .. } if unbind == &["d".to_string()])
        );
    }
}
