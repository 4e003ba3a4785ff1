//! Room names. Every room the gateway joins or emits to is built here, never with ad-hoc
//! `format!` at call sites, so the names cannot drift between joiners and emitters.

/// Every admin, dispatcher and support agent.
pub const ADMIN_ALL: &str = "admin:all";

const DRIVER: &str = "driver:";
const PASSENGER: &str = "passenger:";

/// All sockets of one driver (every session, every replica).
pub fn driver(user_id: &str) -> String {
    format!("{DRIVER}{user_id}")
}

/// All sockets of one passenger.
pub fn passenger(user_id: &str) -> String {
    format!("{PASSENGER}{user_id}")
}

/// Whether `room` is a user's own room of `ns`: [`driver`] in `/drivers`, [`passenger`] in
/// `/passengers` (the rooms whose events are kept for recovery).
pub fn is_user_room(ns: crate::namespace::Namespace, room: &str) -> bool {
    use crate::namespace::Namespace;
    let prefix = match ns {
        Namespace::Drivers => DRIVER,
        Namespace::Passengers => PASSENGER,
        Namespace::Admin => return false,
    };
    room.strip_prefix(prefix).is_some_and(|id| !id.is_empty())
}

/// All sockets opened with one session (`sid` claim = `sessions.jti`), in any namespace.
pub fn session(sid: &str) -> String {
    format!("session:{sid}")
}

/// One socket, by its id: how a replica reaches a socket that may live on another replica.
pub fn socket(socket_id: &str) -> String {
    format!("socket:{socket_id}")
}

/// Admins of one organisation.
pub fn admin_org(org_id: &str) -> String {
    format!("admin:org:{org_id}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_match_the_contract() {
        assert_eq!(super::driver("u1"), "driver:u1");
        assert_eq!(super::passenger("u2"), "passenger:u2");
        assert_eq!(super::session("s"), "session:s");
        assert_eq!(super::admin_org("acme"), "admin:org:acme");
        assert_eq!(super::socket("abc"), "socket:abc");
    }

    #[test]
    fn user_rooms_are_a_user_s_own_room_in_its_namespace() {
        use crate::namespace::Namespace::*;
        assert!(super::is_user_room(Drivers, &super::driver("d1")));
        assert!(super::is_user_room(Passengers, &super::passenger("p1")));
        assert!(!super::is_user_room(Drivers, &super::passenger("p1")));
        assert!(!super::is_user_room(Passengers, "passenger:"));
        assert!(!super::is_user_room(Passengers, &super::session("s")));
        assert!(!super::is_user_room(Admin, super::ADMIN_ALL));
    }
}

/// Whether `room` is of a kind the generic push endpoint may target.
pub fn is_pushable(room: &str) -> bool {
    if room == ADMIN_ALL {
        return true;
    }
    [DRIVER, PASSENGER, "session:", "admin:org:"]
        .iter()
        .any(|prefix| {
            room.strip_prefix(prefix)
                .is_some_and(|rest| !rest.is_empty())
        })
}

#[cfg(test)]
mod push_tests {
    #[test]
    fn only_the_contract_kinds_are_pushable() {
        for ok in [
            "driver:1",
            "passenger:2",
            "session:s",
            "admin:all",
            "admin:org:acme",
        ] {
            assert!(super::is_pushable(ok), "{ok}");
        }
        for bad in [
            "driver:",
            "admin:other",
            "socket-id",
            "",
            "trip:1",
            "admin:org:",
        ] {
            assert!(!super::is_pushable(bad), "{bad}");
        }
    }
}
