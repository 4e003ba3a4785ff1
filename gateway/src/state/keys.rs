//! Every Redis key, channel and stream the gateway names, under `REDIS_PREFIX` (`{p}` below), so
//! that clusters and test runs sharing one Redis stay apart.
//!
//! | name | type | holds |
//! |---|---|---|
//! | `{p}:driver:{id}` | hash | a driver's status, last position, active trip |
//! | `{p}:drivers:geo` | geo set | ONLINE drivers with a position |
//! | `{p}:driver-locations` | stream | accepted positions, for backends (capped) |
//! | `{p}:rate:{id}` | string | a driver's position reports in the current second |
//! | `{p}:presence:{id}` | set | replicas holding a socket of the driver |
//! | `{p}:presence:pending` | sorted set | drivers in their grace, by deadline |
//! | `{p}:nodes` | sorted set | replica leases, by expiry |
//! | `{p}:node:{node}:drivers` | set | drivers a replica holds a socket of |
//! | `{p}:node:{node}:stats` | string | a replica's socket counts (JSON) |
//! | `{p}:trip:{id}` | hash | a trip's status, passenger, driver, version |
//! | `{p}:user-sockets:{ns}:{user}` | sorted set | a user's sockets by opening time (`MAX_SOCKETS_PER_USER`) |
//! | `{p}:handshakes:{user}` | string | a user's handshakes in the window (`HANDSHAKE_RATE_PER_USER`) |
//! | `{p}:auth-events` | channel | auth events from the auth service and the replicas |
//! | `{p}:socket.io…` | channels | the Socket.IO adapter's (named by socketioxide-redis from this prefix) |
//!
//! Some scripts still derive keys from ids and the prefix inside Lua (`reap_nodes`,
//! `expire_drivers`, `live_nodes`, `presence_resync`, `write_trip`, `record_location`): the
//! same names, built there from [`Keys::prefix`]. A standalone Redis (or all keys on one shard)
//! is required for them.

use shared::namespace::Namespace;

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix, for the scripts that build keys themselves.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    pub fn driver(&self, driver: &str) -> String {
        self.key(&["driver", driver])
    }

    pub fn drivers_geo(&self) -> String {
        self.key(&["drivers", "geo"])
    }

    pub fn driver_locations(&self) -> String {
        self.key(&["driver-locations"])
    }

    pub fn location_rate(&self, driver: &str) -> String {
        self.key(&["rate", driver])
    }

    pub fn presence(&self, driver: &str) -> String {
        self.key(&["presence", driver])
    }

    pub fn presence_pending(&self) -> String {
        self.key(&["presence", "pending"])
    }

    pub fn nodes(&self) -> String {
        self.key(&["nodes"])
    }

    pub fn node_drivers(&self, node: &str) -> String {
        self.key(&["node", node, "drivers"])
    }

    pub fn node_stats(&self, node: &str) -> String {
        self.key(&["node", node, "stats"])
    }

    pub fn trip(&self, trip: &str) -> String {
        self.key(&["trip", trip])
    }

    /// The prefix `write_trip.lua` completes with a driver id.
    pub fn driver_prefix(&self) -> String {
        self.key(&["driver", ""])
    }

    pub fn user_sockets(&self, ns: Namespace, user: &str) -> String {
        self.key(&["user-sockets", ns.path().trim_start_matches('/'), user])
    }

    pub fn handshakes(&self, user: &str) -> String {
        self.key(&["handshakes", user])
    }

    pub fn auth_events(&self) -> String {
        self.key(&["auth-events"])
    }

    /// What the Socket.IO adapter prefixes its channels with.
    pub fn adapter(&self) -> String {
        self.key(&["socket.io"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the contract of a running fleet (a rolling update mixes versions) and of
    /// the auth service (`{p}:auth-events`): a rename is a migration, not a refactor.
    #[test]
    fn the_names_do_not_change() {
        let k = Keys::new("gw");
        assert_eq!(k.driver("d1"), "gw:driver:d1");
        assert_eq!(k.drivers_geo(), "gw:drivers:geo");
        assert_eq!(k.driver_locations(), "gw:driver-locations");
        assert_eq!(k.location_rate("d1"), "gw:rate:d1");
        assert_eq!(k.presence("d1"), "gw:presence:d1");
        assert_eq!(k.presence_pending(), "gw:presence:pending");
        assert_eq!(k.nodes(), "gw:nodes");
        assert_eq!(k.node_drivers("n1"), "gw:node:n1:drivers");
        assert_eq!(k.node_stats("n1"), "gw:node:n1:stats");
        assert_eq!(k.trip("t1"), "gw:trip:t1");
        assert_eq!(k.driver_prefix(), "gw:driver:");
        assert_eq!(
            k.user_sockets(Namespace::Drivers, "u1"),
            "gw:user-sockets:drivers:u1"
        );
        assert_eq!(k.handshakes("u1"), "gw:handshakes:u1");
        assert_eq!(k.auth_events(), "gw:auth-events");
        assert_eq!(k.adapter(), "gw:socket.io");
    }
}
