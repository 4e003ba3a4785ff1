//! What a connected socket knows about itself (the guide's `*SocketData`), stored in the
//! socket's extensions by the handshake and read by handlers.

use serde::Serialize;
use shared::{namespace::Namespace, rooms};

use crate::auth::handshake::Identity;

/// The guide's `DriverSocketData`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverSocketData {
    pub user_id: String,
    pub driver_id: String,
    /// The token's `sid` claim.
    pub jti: String,
    /// `sessions.id`.
    pub session_id: String,
    pub session_type: Option<String>,
    pub user_type: &'static str,
}

/// The guide's `PassengerSocketData`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassengerSocketData {
    pub passenger_id: String,
    pub sid: String,
}

/// The guide's `AdminSocketData`; `role` is the user type (ADMIN, DISPATCHER, SUPPORT).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminSocketData {
    pub user_id: String,
    pub sid: String,
    pub role: &'static str,
    /// Admins of an organisation also join `admin:org:{orgId}`.
    pub org_id: Option<String>,
}

/// One socket's context, by namespace.
#[derive(Debug, Clone)]
pub enum SocketContext {
    Driver(DriverSocketData),
    Passenger(PassengerSocketData),
    Admin(AdminSocketData),
}

impl SocketContext {
    pub fn new(ns: Namespace, id: Identity) -> Self {
        let user_id = id.user_id.to_string();
        match ns {
            Namespace::Drivers => Self::Driver(DriverSocketData {
                driver_id: user_id.clone(),
                user_id,
                jti: id.sid,
                session_id: id.session_id.to_string(),
                session_type: id.session_type,
                user_type: id.user_type.as_str(),
            }),
            Namespace::Passengers => Self::Passenger(PassengerSocketData {
                passenger_id: user_id,
                sid: id.sid,
            }),
            Namespace::Admin => Self::Admin(AdminSocketData {
                user_id,
                sid: id.sid,
                role: id.user_type.as_str(),
                org_id: id.org_id,
            }),
        }
    }

    pub fn user_id(&self) -> &str {
        match self {
            Self::Driver(d) => &d.user_id,
            Self::Passenger(p) => &p.passenger_id,
            Self::Admin(a) => &a.user_id,
        }
    }

    pub fn sid(&self) -> &str {
        match self {
            Self::Driver(d) => &d.jti,
            Self::Passenger(p) => &p.sid,
            Self::Admin(a) => &a.sid,
        }
    }

    /// The rooms of the contract's table, joined right after the handshake.
    pub fn rooms(&self) -> Vec<String> {
        match self {
            Self::Driver(d) => vec![rooms::driver(&d.user_id), rooms::session(&d.jti)],
            Self::Passenger(p) => vec![rooms::passenger(&p.passenger_id), rooms::session(&p.sid)],
            Self::Admin(a) => {
                let mut joined = vec![rooms::ADMIN_ALL.to_owned(), rooms::session(&a.sid)];
                if let Some(org) = &a.org_id {
                    joined.push(rooms::admin_org(org));
                }
                joined
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::namespace::UserType;
    use uuid::Uuid;

    fn identity(user_type: UserType, org: Option<&str>) -> Identity {
        Identity {
            user_id: Uuid::nil(),
            sid: "s1".into(),
            session_id: Uuid::nil(),
            session_type: None,
            user_type,
            org_id: org.map(str::to_owned),
        }
    }

    #[test]
    fn rooms_follow_the_contract() {
        let nil = Uuid::nil().to_string();
        let d = SocketContext::new(Namespace::Drivers, identity(UserType::Driver, None));
        assert_eq!(d.rooms(), [format!("driver:{nil}"), "session:s1".into()]);
        let p = SocketContext::new(Namespace::Passengers, identity(UserType::Passenger, None));
        assert_eq!(p.rooms(), [format!("passenger:{nil}"), "session:s1".into()]);
        let a = SocketContext::new(Namespace::Admin, identity(UserType::Support, None));
        assert_eq!(a.rooms(), ["admin:all", "session:s1"]);
        let a = SocketContext::new(Namespace::Admin, identity(UserType::Admin, Some("acme")));
        assert_eq!(a.rooms(), ["admin:all", "session:s1", "admin:org:acme"]);
    }
}
