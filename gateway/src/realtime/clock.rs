//! Timestamps as the contract writes them: RFC 3339, UTC, set when the gateway accepts an event.

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
