//! The gateway's namespaces and the user types each one admits.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The `user_type` column of `users`, as the auth service writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserType {
    Driver,
    Passenger,
    Admin,
    Dispatcher,
    Support,
}

impl UserType {
    /// Parses the database spelling; an unknown type is `None` (and admitted nowhere).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "DRIVER" => Self::Driver,
            "PASSENGER" => Self::Passenger,
            "ADMIN" => Self::Admin,
            "DISPATCHER" => Self::Dispatcher,
            "SUPPORT" => Self::Support,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Driver => "DRIVER",
            Self::Passenger => "PASSENGER",
            Self::Admin => "ADMIN",
            Self::Dispatcher => "DISPATCHER",
            Self::Support => "SUPPORT",
        }
    }
}

impl fmt::Display for UserType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the three Socket.IO namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    Drivers,
    Passengers,
    Admin,
}

impl Namespace {
    pub const ALL: [Namespace; 3] = [Self::Drivers, Self::Passengers, Self::Admin];

    /// The namespace path clients connect to (`io("http://host/drivers")`).
    pub fn path(self) -> &'static str {
        match self {
            Self::Drivers => "/drivers",
            Self::Passengers => "/passengers",
            Self::Admin => "/admin",
        }
    }

    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|ns| ns.path() == path)
    }

    /// Whether a user of this type may connect here (handshake step 5).
    pub fn admits(self, user_type: UserType) -> bool {
        match self {
            Self::Drivers => user_type == UserType::Driver,
            Self::Passengers => user_type == UserType::Passenger,
            Self::Admin => matches!(
                user_type,
                UserType::Admin | UserType::Dispatcher | UserType::Support
            ),
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_namespace_admits_only_its_user_types() {
        assert!(Namespace::Drivers.admits(UserType::Driver));
        assert!(!Namespace::Drivers.admits(UserType::Passenger));
        assert!(!Namespace::Passengers.admits(UserType::Admin));
        for role in [UserType::Admin, UserType::Dispatcher, UserType::Support] {
            assert!(Namespace::Admin.admits(role));
        }
        assert!(!Namespace::Admin.admits(UserType::Driver));
    }

    #[test]
    fn user_types_round_trip_and_unknown_is_none() {
        for t in ["DRIVER", "PASSENGER", "ADMIN", "DISPATCHER", "SUPPORT"] {
            assert_eq!(UserType::parse(t).map(UserType::as_str), Some(t));
        }
        assert_eq!(UserType::parse("driver"), None);
        assert_eq!(Namespace::from_path("/admin"), Some(Namespace::Admin));
        assert_eq!(Namespace::from_path("/"), None);
    }
}
