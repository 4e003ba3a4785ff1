//! Offsets: Redis stream entry ids (`<ms>-<seq>`), increasing per room. The memory log makes
//! them the same way, so clients see one format. Clients treat them as opaque strings.
//!
//! A room with nothing kept has no entry to point at, so `hello` gives its sockets a *position*
//! instead ([`Offset::position`]): an offset just before the moment it was read, whose sequence
//! number is the room's mark. No entry has such a sequence number (entries number from 0 within
//! a millisecond), so a position is never mistaken for an entry, and one read for another
//! user's room is not this room's.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset {
    pub ms: u64,
    pub seq: u64,
}

impl Offset {
    /// The next offset after `self` at time `now_ms` (the clock may stand still or step back).
    pub fn next(self, now_ms: u64) -> Self {
        if now_ms > self.ms {
            Self { ms: now_ms, seq: 0 }
        } else {
            Self {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }
}

/// The sequence number of a room's positions: the FNV-1a hash of the room's name, above every
/// sequence number a stream gives its entries.
pub fn room_mark(room: &str) -> u64 {
    let hash = room.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (1 << 32) | u64::from(hash)
}

impl Offset {
    /// The position of `room` at `now_ms` when it has nothing kept: every event appended from
    /// `now_ms` on comes after it, as long as the log's clock (Redis' `TIME`, or this replica's
    /// for the memory log) does not step back.
    pub fn position(room: &str, now_ms: u64) -> Self {
        Self {
            ms: now_ms.saturating_sub(1),
            seq: room_mark(room),
        }
    }

    /// Whether this is a position given for `room` (not an entry, not another room's).
    pub fn is_position_of(&self, room: &str) -> bool {
        self.seq == room_mark(room)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Why a client's offset cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an offset")]
pub struct Malformed;

impl FromStr for Offset {
    type Err = Malformed;

    fn from_str(s: &str) -> Result<Self, Malformed> {
        let (ms, seq) = s.split_once('-').ok_or(Malformed)?;
        let digits =
            |t: &str| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(Malformed);
        }
        Ok(Self {
            ms: ms.parse().map_err(|_| Malformed)?,
            seq: seq.parse().map_err(|_| Malformed)?,
        })
    }
}

impl Serialize for Offset {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offsets_read_and_order_like_stream_ids() {
        let a: Offset = "1733000000000-0".parse().expect("offset");
        let b: Offset = "1733000000000-1".parse().expect("offset");
        let c: Offset = "1733000000001-0".parse().expect("offset");
        assert!(a < b && b < c);
        assert_eq!(a.to_string(), "1733000000000-0");
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1",
            "a-1",
            "1-b",
            "1-2-3",
            " 1-2",
            "+1-2",
            "1-2 ",
            "99999999999999999999999-0",
        ] {
            assert_eq!(bad.parse::<Offset>(), Err(Malformed), "{bad:?}");
        }
    }

    #[test]
    fn next_increases_even_when_the_clock_does_not() {
        let o = Offset { ms: 10, seq: 4 };
        assert_eq!(o.next(11), Offset { ms: 11, seq: 0 });
        assert_eq!(o.next(10), Offset { ms: 10, seq: 5 });
        assert_eq!(o.next(3), Offset { ms: 10, seq: 5 });
    }

    #[test]
    fn positions_belong_to_their_room_and_precede_what_follows() {
        let p = Offset::position("passenger:p1", 1_000);
        assert!(p.is_position_of("passenger:p1"));
        assert!(!p.is_position_of("passenger:p2"));
        assert!(!Offset { ms: 999, seq: 0 }.is_position_of("passenger:p1"));
        // The first entry of the same millisecond, and every later one, come after it.
        assert!(p < Offset { ms: 1_000, seq: 0 });
        assert_eq!(p.to_string().parse::<Offset>(), Ok(p));
    }

    proptest! {
        #[test]
        fn any_string_parses_or_is_refused_without_panicking(s in ".{0,40}") {
            if let Ok(o) = s.parse::<Offset>() {
                prop_assert_eq!(o.to_string().parse::<Offset>(), Ok(o));
            }
        }

        #[test]
        fn display_round_trips(ms in any::<u64>(), seq in any::<u64>()) {
            let o = Offset { ms, seq };
            prop_assert_eq!(o.to_string().parse::<Offset>(), Ok(o));
        }
    }
}
