//! Typed input: request bodies and event payloads decode (serde) into structs whose fields are
//! domain types ([`Latitude`], [`UserId`], [`Id`], ...). Each field decodes into a [`Field`], so
//! one bad field never fails the whole decode with serde's wording: the decoder of each struct
//! asks for its fields in the contract's order, and the first bad one is refused as the contract
//! words it, `"{field} is required"` or `"{field} {problem}"`. The one place input is read; the
//! socket side and the internal API map a [`Refused`] to their own error.

use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::Value;
use shared::events::{DriverStatus, TripStatus};
use uuid::Uuid;

use crate::clock::is_rfc3339;

/// Why an input was refused: the message the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// What a value is not, said of its field (`"must be a finite number"`), or in words of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Said after the field's name.
    Field(String),
    /// The whole message.
    Whole(String),
    /// Counts as if the field were not sent.
    Absent,
}

/// A domain type read from one JSON value.
pub trait FromJson: Sized {
    fn from_json(value: Value) -> Result<Self, Problem>;
}

/// One field as sent: absent (or null), a valid value, or why it is not one.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field<T> {
    #[default]
    Absent,
    Valid(T),
    Invalid(Problem),
}

impl<'de, T: FromJson> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<Value>::deserialize(deserializer)? {
            None | Some(Value::Null) => Self::Absent,
            Some(value) => match T::from_json(value) {
                Ok(valid) => Self::Valid(valid),
                Err(Problem::Absent) => Self::Absent,
                Err(problem) => Self::Invalid(problem),
            },
        })
    }
}

impl<T> Field<T> {
    /// The value; absent is `"{name} is required"`.
    pub fn required(self, name: &str) -> Result<T, Refused> {
        self.required_or(name, &format!("{name} is required"))
    }

    /// The value; absent is refused with `message`.
    pub fn required_or(self, name: &str, message: &str) -> Result<T, Refused> {
        self.optional(name)?
            .ok_or_else(|| Refused(message.to_owned()))
    }

    /// The value if sent; a bad one is refused.
    pub fn optional(self, name: &str) -> Result<Option<T>, Refused> {
        match self {
            Self::Absent => Ok(None),
            Self::Valid(value) => Ok(Some(value)),
            Self::Invalid(Problem::Field(problem)) => Err(Refused(format!("{name} {problem}"))),
            Self::Invalid(Problem::Whole(message)) => Err(Refused(message)),
            Self::Invalid(Problem::Absent) => Ok(None),
        }
    }
}

/// Decodes a JSON object into `T` (whose fields are [`Field`]s and raw values, so decoding an
/// object cannot fail); anything but an object is refused with `not_object`.
pub fn decode<T: DeserializeOwned>(value: Option<Value>, not_object: &str) -> Result<T, Refused> {
    match value {
        Some(object @ Value::Object(_)) => {
            serde_json::from_value(object).map_err(|_| Refused(not_object.to_owned()))
        }
        _ => Err(Refused(not_object.to_owned())),
    }
}

fn field(problem: impl Into<String>) -> Problem {
    Problem::Field(problem.into())
}

/// A finite JSON number.
fn finite(value: &Value) -> Result<f64, Problem> {
    value
        .as_f64()
        .filter(|n| n.is_finite())
        .ok_or_else(|| field("must be a finite number"))
}

fn within(value: f64, range: impl std::ops::RangeBounds<f64>, words: &str) -> Result<f64, Problem> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(field(format!("must be within {words}")))
    }
}

/// Any finite number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

impl FromJson for Number {
    fn from_json(value: Value) -> Result<Self, Problem> {
        finite(&value).map(Self)
    }
}

/// Degrees north, within [-90, 90].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latitude(pub f64);

impl FromJson for Latitude {
    fn from_json(value: Value) -> Result<Self, Problem> {
        within(finite(&value)?, -90.0..=90.0, "[-90, 90]").map(Self)
    }
}

/// Degrees east, within [-180, 180].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Longitude(pub f64);

impl FromJson for Longitude {
    fn from_json(value: Value) -> Result<Self, Problem> {
        within(finite(&value)?, -180.0..=180.0, "[-180, 180]").map(Self)
    }
}

/// Degrees from north, within [0, 360).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heading(pub f64);

impl FromJson for Heading {
    fn from_json(value: Value) -> Result<Self, Problem> {
        within(finite(&value)?, 0.0..360.0, "[0, 360)").map(Self)
    }
}

/// A speed or an accuracy: at least 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonNegative(pub f64);

impl FromJson for NonNegative {
    fn from_json(value: Value) -> Result<Self, Problem> {
        let n = finite(&value)?;
        if n < 0.0 {
            return Err(field("must be >= 0"));
        }
        Ok(Self(n))
    }
}

/// An RFC 3339 timestamp, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp(pub String);

impl FromJson for Timestamp {
    fn from_json(value: Value) -> Result<Self, Problem> {
        match value {
            Value::String(s) if is_rfc3339(&s) => Ok(Self(s)),
            _ => Err(field("must be an RFC 3339 string")),
        }
    }
}

/// An integer of `[1, MAX]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count<const MAX: u64>(pub u64);

impl<const MAX: u64> FromJson for Count<MAX> {
    fn from_json(value: Value) -> Result<Self, Problem> {
        value
            .as_u64()
            .filter(|n| (1..=MAX).contains(n))
            .map(Self)
            .ok_or_else(|| field(format!("must be an integer within [1, {MAX}]")))
    }
}

/// `true` or `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl FromJson for Flag {
    fn from_json(value: Value) -> Result<Self, Problem> {
        value
            .as_bool()
            .map(Self)
            .ok_or_else(|| field("must be true or false"))
    }
}

/// A client's non-empty string of at most `MAX` characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<const MAX: usize>(pub String);

impl<const MAX: usize> FromJson for Text<MAX> {
    fn from_json(value: Value) -> Result<Self, Problem> {
        match value {
            Value::String(s) if !s.trim().is_empty() && s.chars().count() <= MAX => {
                Ok(Self(s.trim().to_owned()))
            }
            _ => Err(field(format!(
                "must be a non-empty string of at most {MAX} characters"
            ))),
        }
    }
}

/// Longest id accepted in a path or body (trip, offer and session ids are opaque strings).
pub const MAX_ID_CHARS: usize = 256;

/// An opaque id from a backend (trip, offer, session): a non-empty string, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(pub String);

impl Id {
    /// An id given in a path.
    pub fn parse(name: &str, value: &str) -> Result<Self, Refused> {
        Self::checked(value).map_err(|problem| Refused(format!("{name} {problem}")))
    }

    /// `value` trimmed, when it is an id; otherwise what it is not.
    fn checked(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() || value.chars().count() > MAX_ID_CHARS {
            return Err(format!(
                "must be a non-empty string of at most {MAX_ID_CHARS} characters"
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

impl FromJson for Id {
    fn from_json(value: Value) -> Result<Self, Problem> {
        let Value::String(s) = value else {
            return Err(field("must be a string"));
        };
        Self::checked(&s).map_err(Problem::Field)
    }
}

/// A user id (a driver's, a passenger's), spelled the way rooms spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId(pub String);

impl UserId {
    /// A user id given in a path or a typed body.
    pub fn parse(name: &str, value: &str) -> Result<Self, Refused> {
        Self::spelled(value).ok_or_else(|| Refused(format!("{name} must be a UUID")))
    }

    /// `value` spelled as rooms spell it (lowercase, hyphenated), when it is a UUID.
    fn spelled(value: &str) -> Option<Self> {
        Uuid::parse_str(value).ok().map(|u| Self(u.to_string()))
    }
}

impl FromJson for UserId {
    fn from_json(value: Value) -> Result<Self, Problem> {
        let Id(id) = Id::from_json(value)?;
        Self::spelled(&id).ok_or_else(|| field("must be a UUID"))
    }
}

impl FromJson for DriverStatus {
    fn from_json(value: Value) -> Result<Self, Problem> {
        value
            .as_str()
            .and_then(DriverStatus::parse)
            .ok_or_else(|| field("must be ONLINE, BUSY or OFFLINE"))
    }
}

impl FromJson for TripStatus {
    fn from_json(value: Value) -> Result<Self, Problem> {
        match value {
            Value::String(t) => TripStatus::parse(&t)
                .ok_or_else(|| Problem::Whole(format!("unknown trip event type {t:?}"))),
            _ => Err(field("must be a string")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(default)]
        lat: Field<Latitude>,
        #[serde(default)]
        user: Field<UserId>,
    }

    fn probe(
        value: Value,
    ) -> (
        Result<Option<f64>, Refused>,
        Result<Option<String>, Refused>,
    ) {
        let p: Probe = decode(Some(value), "payload must be a JSON object").expect("an object");
        (
            p.lat.optional("lat").map(|l| l.map(|l| l.0)),
            p.user.optional("userId").map(|u| u.map(|u| u.0)),
        )
    }

    #[test]
    fn a_field_is_absent_null_valid_or_refused_in_the_contract_s_words() {
        assert_eq!(probe(json!({})), (Ok(None), Ok(None)));
        assert_eq!(
            probe(json!({"lat": null, "user": null})),
            (Ok(None), Ok(None))
        );
        let upper = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
        assert_eq!(
            probe(json!({"lat": 45, "user": upper})),
            (Ok(Some(45.0)), Ok(Some(upper.to_lowercase())))
        );
        assert_eq!(
            probe(json!({"lat": 91, "user": "x"})),
            (
                Err(Refused("lat must be within [-90, 90]".into())),
                Err(Refused("userId must be a UUID".into()))
            )
        );
        assert_eq!(
            probe(json!({"lat": "1", "user": 7})).1,
            Err(Refused("userId must be a string".into()))
        );
        let p: Probe = decode(Some(json!({})), "x").expect("an object");
        assert_eq!(
            p.lat.required("lat"),
            Err(Refused("lat is required".into()))
        );
        assert_eq!(
            decode::<Probe>(Some(json!([1])), "payload must be a JSON object").err(),
            Some(Refused("payload must be a JSON object".into()))
        );
    }
}
