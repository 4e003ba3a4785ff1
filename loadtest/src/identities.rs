//! Load-test identities: deterministic user ids and session ids, seeded into PostgreSQL by
//! `loadgen seed`, and tokens minted with the cluster's JWT secret.

use anyhow::Context;
use jsonwebtoken::{EncodingKey, Header};
use shared::claims::AccessClaims;
use tokio_postgres::NoTls;

/// Who a load-test connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Driver,
    Passenger,
    Admin,
}

impl Kind {
    fn tag(self) -> (u16, &'static str, &'static str) {
        match self {
            Kind::Driver => (0xd000, "DRIVER", "d"),
            Kind::Passenger => (0xa000, "PASSENGER", "p"),
            Kind::Admin => (0xad00, "ADMIN", "a"),
        }
    }

    pub fn namespace(self) -> &'static str {
        match self {
            Kind::Driver => "/drivers",
            Kind::Passenger => "/passengers",
            Kind::Admin => "/admin",
        }
    }
}

/// The i-th user of a kind: a valid v4-shaped UUID that encodes kind and index.
pub fn user_id(kind: Kind, i: u32) -> String {
    format!("{:04x}0000-0000-4000-8000-{:012x}", kind.tag().0, i)
}

/// The i-th user's session (`sessions.jti`, the token's `sid`).
pub fn session_id(kind: Kind, i: u32) -> String {
    format!("load-{}-{i}", kind.tag().2)
}

pub fn token(secret: &str, kind: Kind, i: u32) -> anyhow::Result<String> {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = AccessClaims {
        sub: user_id(kind, i),
        sid: session_id(kind, i),
        iat: now,
        exp: now + 24 * 3600,
        iss: None,
        aud: None,
    };
    Ok(jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Inserts `count` users of `kind` with one active session each (idempotent).
pub async fn seed(database_url: &str, kind: Kind, count: u32) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(database_url, NoTls)
        .await
        .context("cannot connect to PostgreSQL")?;
    tokio::spawn(connection);
    let (_, user_type, _) = kind.tag();
    let ids: Vec<String> = (0..count).map(|i| user_id(kind, i)).collect();
    let sids: Vec<String> = (0..count).map(|i| session_id(kind, i)).collect();
    client
        .execute(
            "INSERT INTO users (id, user_type, status)
             SELECT u::uuid, $2, 'ACTIVE' FROM unnest($1::text[]) AS u
             ON CONFLICT (id) DO NOTHING",
            &[&ids, &user_type],
        )
        .await
        .context("cannot seed users")?;
    client
        .execute(
            "INSERT INTO sessions (id, jti, user_id, session_type)
             SELECT gen_random_uuid(), s, u::uuid, 'load' FROM unnest($1::text[], $2::text[]) AS t(u, s)
             ON CONFLICT (jti) DO UPDATE SET revoked = false",
            &[&ids, &sids],
        )
        .await
        .context("cannot seed sessions")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuids_distinct_per_kind_and_index() {
        let a = user_id(Kind::Driver, 7);
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
        assert_ne!(a, user_id(Kind::Passenger, 7));
        assert_ne!(a, user_id(Kind::Driver, 8));
        assert_eq!(session_id(Kind::Driver, 7), "load-d-7");
    }
}
