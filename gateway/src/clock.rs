//! The ground-floor clock every layer reads: wall-clock milliseconds, and timestamps as the
//! contract writes them (RFC 3339, UTC, set when the gateway accepts an event).

use std::time::{SystemTime, UNIX_EPOCH};

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

pub fn format_rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Whether `s` is an RFC 3339 timestamp.
pub fn is_rfc3339(s: &str) -> bool {
    OffsetDateTime::parse(s, &Rfc3339).is_ok()
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// RFC 3339 of a moment in milliseconds since the epoch.
pub fn rfc3339_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map(format_rfc3339)
        .unwrap_or_else(|_| format_rfc3339(OffsetDateTime::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_written_in_rfc3339() {
        assert_eq!(rfc3339_ms(1_700_000_000_500), "2023-11-14T22:13:20.5Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
    }
}
