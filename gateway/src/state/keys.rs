//! Every Redis key, channel and stream the gateway names, under `REDIS_PREFIX` (`{p}` below), so
//! that clusters and test runs sharing one Redis stay apart.
//!
//! On a Redis Cluster a script may only touch keys of one hash slot. The `{…}` hash tags below
//! put what one script touches in one slot, and spread the rest (docs/decisions.md, "State on a
//! Redis Cluster"):
//! - a driver's keys live in one of [`DRIVER_SHARDS`] shards (`{dN}`, N from the driver id),
//!   together with that shard's part of the geo index, so a status change or a position report
//!   stays one atomic script that also keeps the index right;
//! - the replica registry (leases, counts, the drivers each replica holds) shares `{nodes}`;
//! - single-key structures carry no tag: they land wherever their name hashes.
//!
//! | name | type | holds |
//! |---|---|---|
//! | `{p}:{dN}:driver:{id}` | hash | a driver's status, last position, active trip (and the trip version it was bound or unbound at) |
//! | `{p}:{dN}:presence:{id}` | hash | replicas holding a socket of the driver → their lease epoch |
//! | `{p}:{dN}:rate:{id}` | hash | a driver's position reports in the current second |
//! | `{p}:{dN}:offers:{id}` | hash | a driver's held offers: `o:{offerId}` the offer, `e:{offerId}` its expiry (ms), `a:{offerId}` its outcome |
//! | `{p}:{dN}:offers` | shard channel | offers of shard N's drivers answered, for the replica waiting on each |
//! | `{p}:{dN}:drivers-geo` | geo set | the shard's ONLINE drivers with a position |
//! | `{p}:driver-locations` | stream | accepted positions, for backends (capped; events.md) |
//! | `{p}:presence:pending` | sorted set | drivers in their grace, by deadline |
//! | `{p}:{nodes}:leases` | sorted set | replica leases, by expiry |
//! | `{p}:{nodes}:epochs` | hash | each live replica's lease epoch (when its lease last started) |
//! | `{p}:{nodes}:stats` | hash | each replica's socket counts (JSON) |
//! | `{p}:{nodes}:reaping` | sorted set | lapsed replicas being reaped, by claim expiry |
//! | `{p}:{nodes}:drivers:{node}` | set | drivers a replica holds a socket of |
//! | `{p}:trip:{id}` | hash | a trip's status, passenger, driver, version; driver bindings not yet applied |
//! | `{p}:user-sockets:{ns}:{user}` | sorted set | a user's sockets by opening time (`MAX_SOCKETS_PER_USER`) |
//! | `{p}:handshakes:{user}` | string | a user's handshakes in the window (`HANDSHAKE_RATE_PER_USER`) |
//! | `{p}:{rN}:recovery:{room}` | stream | a user room's recoverable events, capped and expiring (recovery.md) |
//! | `{p}:{rN}:recovery-since` | string | when shard N started keeping (ms); never expires, so a Redis that lost its data is noticed |
//! | `{p}:{rN}:recovery` | shard channel | the recoverable events of the rooms of shard N, as appended |
//! | `{p}:auth-events` | channel | auth events from the auth service and the replicas |
//! | `{p}:socket.io…` | shard channels | the Socket.IO adapter's (named by socketioxide-redis from this prefix) |
//!
//! Ids are used as given: a driver id containing braces cannot move its key, because the first
//! `{…}` of a name is the tag and ours comes before the id. The prefix may not contain braces
//! (checked by the configuration).

use shared::namespace::Namespace;

/// Shards of the driver keys and of the geo index. A change renames every driver key: it is a
/// migration (docs/operations.md), not a setting.
pub const DRIVER_SHARDS: u32 = 16;

/// The shard of a driver: FNV-1a of the id, stable across releases and platforms.
pub fn driver_shard(driver: &str) -> u32 {
    fnv1a(driver) % DRIVER_SHARDS
}

/// Shards of the recovery streams and channels: a room's stream and the channel its events are
/// published on share a slot, so one script appends and publishes, in order.
pub const RECOVERY_SHARDS: u32 = 16;

/// The recovery shard of a user room (`driver:{id}`, `passenger:{id}`).
pub fn room_shard(room: &str) -> u32 {
    fnv1a(room) % RECOVERY_SHARDS
}

fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    /// `{p}:{dN}:` for each driver shard: driver keys are named on every position report.
    driver_shards: Vec<String>,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            driver_shards: (0..DRIVER_SHARDS)
                .map(|shard| format!("{prefix}:{}:", Self::shard_tag(shard)))
                .collect(),
        }
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    fn shard_tag(shard: u32) -> String {
        format!("{{d{shard}}}")
    }

    fn driver_key(&self, kind: &str, driver: &str) -> String {
        let shard = &self.driver_shards[driver_shard(driver) as usize];
        let mut key = String::with_capacity(shard.len() + kind.len() + 1 + driver.len());
        key.push_str(shard);
        key.push_str(kind);
        key.push(':');
        key.push_str(driver);
        key
    }

    pub fn driver(&self, driver: &str) -> String {
        self.driver_key("driver", driver)
    }

    pub fn presence(&self, driver: &str) -> String {
        self.driver_key("presence", driver)
    }

    /// A driver's held offers.
    pub fn offers(&self, driver: &str) -> String {
        self.driver_key("offers", driver)
    }

    /// The shard channel that tells every replica an offer of a driver of this shard was
    /// answered (same hash tag as the driver's keys, so the answering script publishes it).
    pub fn offers_channel(&self, shard: u32) -> String {
        format!("{}offers", self.driver_shards[shard as usize])
    }

    /// [`Keys::offers_channel`] of `driver`'s shard.
    pub fn driver_offers_channel(&self, driver: &str) -> String {
        self.offers_channel(driver_shard(driver))
    }

    pub fn location_rate(&self, driver: &str) -> String {
        self.driver_key("rate", driver)
    }

    /// The geo index part of `shard`.
    pub fn drivers_geo(&self, shard: u32) -> String {
        format!("{}drivers-geo", self.driver_shards[shard as usize])
    }

    /// The geo index part a driver belongs in.
    pub fn driver_geo(&self, driver: &str) -> String {
        self.drivers_geo(driver_shard(driver))
    }

    pub fn driver_locations(&self) -> String {
        self.key(&["driver-locations"])
    }

    pub fn presence_pending(&self) -> String {
        self.key(&["presence", "pending"])
    }

    pub fn leases(&self) -> String {
        self.key(&["{nodes}", "leases"])
    }

    pub fn epochs(&self) -> String {
        self.key(&["{nodes}", "epochs"])
    }

    pub fn node_stats(&self) -> String {
        self.key(&["{nodes}", "stats"])
    }

    pub fn reaping(&self) -> String {
        self.key(&["{nodes}", "reaping"])
    }

    pub fn node_drivers(&self, node: &str) -> String {
        self.key(&["{nodes}", "drivers", node])
    }

    pub fn trip(&self, trip: &str) -> String {
        self.key(&["trip", trip])
    }

    pub fn user_sockets(&self, ns: Namespace, user: &str) -> String {
        self.key(&["user-sockets", ns.path().trim_start_matches('/'), user])
    }

    pub fn handshakes(&self, user: &str) -> String {
        self.key(&["handshakes", user])
    }

    /// A user room's recoverable events.
    pub fn recovery_stream(&self, room: &str) -> String {
        self.key(&[&format!("{{r{}}}", room_shard(room)), "recovery", room])
    }

    /// Marks an event kept for `room` under `once` (kept once though every replica hears it).
    pub fn recovery_once(&self, room: &str, once: &str) -> String {
        self.key(&[
            &format!("{{r{}}}", room_shard(room)),
            "recovery-once",
            room,
            once,
        ])
    }

    /// When recovery shard `shard` started keeping (ms): positions given before it are refused.
    pub fn recovery_since(&self, shard: u32) -> String {
        self.key(&[&format!("{{r{shard}}}"), "recovery-since"])
    }

    /// The channel the events of the rooms of recovery shard `shard` are published on.
    pub fn recovery_channel(&self, shard: u32) -> String {
        self.key(&[&format!("{{r{shard}}}"), "recovery"])
    }

    pub fn auth_events(&self) -> String {
        self.key(&["auth-events"])
    }

    /// What the Socket.IO adapter prefixes its channels with.
    pub fn adapter(&self) -> String {
        self.key(&["socket.io"])
    }
}

/// The hash slot Redis Cluster puts `key` in (CRC16 of its tag, mod 16384), for tests and checks.
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16_xmodem(hashed) % 16384
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |mut crc, &byte| {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the contract of a running fleet (a rolling update mixes versions) and of
    /// the backends (`{p}:auth-events`, `{p}:driver-locations`): a rename is a migration.
    #[test]
    fn the_names_do_not_change() {
        let k = Keys::new("gw");
        assert_eq!(driver_shard("d1"), 6);
        assert_eq!(k.driver("d1"), "gw:{d6}:driver:d1");
        assert_eq!(k.presence("d1"), "gw:{d6}:presence:d1");
        assert_eq!(k.location_rate("d1"), "gw:{d6}:rate:d1");
        assert_eq!(k.driver_geo("d1"), "gw:{d6}:drivers-geo");
        assert_eq!(k.driver_locations(), "gw:driver-locations");
        assert_eq!(k.presence_pending(), "gw:presence:pending");
        assert_eq!(k.leases(), "gw:{nodes}:leases");
        assert_eq!(k.epochs(), "gw:{nodes}:epochs");
        assert_eq!(k.node_stats(), "gw:{nodes}:stats");
        assert_eq!(k.reaping(), "gw:{nodes}:reaping");
        assert_eq!(k.node_drivers("n1"), "gw:{nodes}:drivers:n1");
        assert_eq!(k.trip("t1"), "gw:trip:t1");
        assert_eq!(
            k.user_sockets(Namespace::Drivers, "u1"),
            "gw:user-sockets:drivers:u1"
        );
        assert_eq!(k.handshakes("u1"), "gw:handshakes:u1");
        assert_eq!(k.auth_events(), "gw:auth-events");
        assert_eq!(room_shard("passenger:u1"), room_shard("passenger:u1"));
        assert_eq!(
            k.recovery_stream("passenger:u1"),
            format!(
                "gw:{{r{}}}:recovery:passenger:u1",
                room_shard("passenger:u1")
            )
        );
        assert_eq!(k.recovery_channel(3), "gw:{r3}:recovery");
        assert_eq!(k.recovery_since(3), "gw:{r3}:recovery-since");
        assert_eq!(
            slot(&k.recovery_once("driver:d1", "revoked:s1")),
            slot(&k.recovery_stream("driver:d1"))
        );
        assert_eq!(k.adapter(), "gw:socket.io");
    }

    #[test]
    fn slots_follow_redis() {
        // Values from Redis' CLUSTER KEYSLOT.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_eq!(slot("{}foo"), crc16_xmodem(b"{}foo") % 16384);
    }

    /// What one script touches shares a slot: a driver's keys and its part of the geo index;
    /// the replica registry.
    #[test]
    fn each_script_touches_one_slot() {
        let k = Keys::new("gw");
        for driver in ["d1", "driver-42", "a{b}c", "", "ü"] {
            let s = slot(&k.driver(driver));
            assert_eq!(slot(&k.presence(driver)), s, "{driver}");
            assert_eq!(slot(&k.location_rate(driver)), s, "{driver}");
            assert_eq!(slot(&k.driver_geo(driver)), s, "{driver}");
        }
        for room in ["driver:d1", "passenger:p-9", "passenger:{x}"] {
            let channel = k.recovery_channel(room_shard(room));
            assert_eq!(slot(&k.recovery_stream(room)), slot(&channel), "{room}");
            let since = k.recovery_since(room_shard(room));
            assert_eq!(slot(&k.recovery_stream(room)), slot(&since), "{room}");
        }
        let s = slot(&k.leases());
        for key in [
            k.epochs(),
            k.node_stats(),
            k.reaping(),
            k.node_drivers("n-1"),
        ] {
            assert_eq!(slot(&key), s, "{key}");
        }
    }

    /// The shards spread over the slots, hence over the masters of a cluster.
    #[test]
    fn shards_spread() {
        let k = Keys::new("gw");
        let slots: std::collections::HashSet<u16> = (0..DRIVER_SHARDS)
            .map(|s| slot(&k.drivers_geo(s)))
            .collect();
        assert_eq!(slots.len(), DRIVER_SHARDS as usize);
        let mut counts = [0u32; DRIVER_SHARDS as usize];
        for i in 0..16_000 {
            counts[driver_shard(&format!("driver-{i}")) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}
