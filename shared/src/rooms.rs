//! Room names. Every room the gateway joins or emits to is built here, never with ad-hoc
//! `format!` at call sites, so the names cannot drift between joiners and emitters.

/// Every admin, dispatcher and support agent.
pub const ADMIN_ALL: &str = "admin:all";

/// All sockets of one driver (every session, every replica).
pub fn driver(user_id: &str) -> String {
    format!("driver:{user_id}")
}

/// All sockets of one passenger.
pub fn passenger(user_id: &str) -> String {
    format!("passenger:{user_id}")
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
}

/// Whether `room` is of a kind the generic push endpoint may target.
pub fn is_pushable(room: &str) -> bool {
    if room == ADMIN_ALL {
        return true;
    }
    ["driver:", "passenger:", "session:", "admin:org:"]
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
