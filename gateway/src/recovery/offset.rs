//! Offsets: Redis stream entry ids (`<ms>-<seq>`), increasing per room. The memory log makes
//! them the same way, so clients see one format. Clients treat them as opaque strings.

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
