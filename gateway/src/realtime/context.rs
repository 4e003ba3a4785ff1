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

/// What a socket's handshake (or its last `auth:refresh`) established. Replaced as a whole by a
/// refresh, so handlers that read it see one consistent version.
#[derive(Debug, Clone)]
pub struct SocketContext {
    pub data: SocketData,
    /// When the socket's access ends, in milliseconds since the epoch.
    pub expires_at_ms: u64,
}

/// The guide's socket data, by namespace.
#[derive(Debug, Clone)]
pub enum SocketData {
    Driver(DriverSocketData),
    Passenger(PassengerSocketData),
    Admin(AdminSocketData),
}

impl SocketContext {
    pub fn new(ns: Namespace, id: Identity) -> Self {
        let expires_at_ms = id.expires_at_ms;
        let user_id = id.user_id.to_string();
        let data = match ns {
            Namespace::Drivers => SocketData::Driver(DriverSocketData {
                driver_id: user_id.clone(),
                user_id,
                jti: id.sid,
                session_id: id.session_id.to_string(),
                session_type: id.session_type,
                user_type: id.user_type.as_str(),
            }),
            Namespace::Passengers => SocketData::Passenger(PassengerSocketData {
                passenger_id: user_id,
                sid: id.sid,
            }),
            Namespace::Admin => SocketData::Admin(AdminSocketData {
                user_id,
                sid: id.sid,
                role: id.user_type.as_str(),
                org_id: id.org_id,
            }),
        };
        Self {
            data,
            expires_at_ms,
        }
    }

    pub fn user_id(&self) -> &str {
        match &self.data {
            SocketData::Driver(d) => &d.user_id,
            SocketData::Passenger(p) => &p.passenger_id,
            SocketData::Admin(a) => &a.user_id,
        }
    }

    pub fn sid(&self) -> &str {
        match &self.data {
            SocketData::Driver(d) => &d.jti,
            SocketData::Passenger(p) => &p.sid,
            SocketData::Admin(a) => &a.sid,
        }
    }

    /// The rooms of the contract's table, joined right after the handshake.
    pub fn rooms(&self) -> Vec<String> {
        match &self.data {
            SocketData::Driver(d) => vec![rooms::driver(&d.user_id), rooms::session(&d.jti)],
            SocketData::Passenger(p) => {
                vec![rooms::passenger(&p.passenger_id), rooms::session(&p.sid)]
            }
            SocketData::Admin(a) => {
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
            expires_at_ms: 0,
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
