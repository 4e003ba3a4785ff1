//! PostgreSQL: a pool (deadpool-postgres) and the one query of the handshake.

use std::{str::FromStr, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::config::DatabaseSettings;

/// Connections kept per replica. Handshakes hold one for a single round trip.
const POOL_SIZE: usize = 16;
/// How long a handshake waits for a connection before answering `Service unavailable`.
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

/// Users and sessions in one round trip: the user by id, and the session by `jti` whoever owns
/// it (the caller refuses a session of another user).
const IDENTITY_SQL: &str = "\
SELECT u.user_type, u.status, u.org_id,
       s.id, s.user_id, s.session_type, s.revoked,
       (s.access_token_expires_at IS NOT NULL AND s.access_token_expires_at <= now()),
       (extract(epoch FROM s.access_token_expires_at) * 1000)::bigint
FROM users u
LEFT JOIN sessions s ON s.jti = $2
WHERE u.id = $1";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("query failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// A frozen or unreachable database: the caller answers now instead of hanging.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// How long a handshake's identity query may take once it has a connection: a frozen database
/// makes handshakes answer `Service unavailable` within this, not when TCP gives up.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one re-validation batch (thousands of sessions) may take.
const BATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// `op`, or [`StoreError::Timeout`] once `limit` passed.
async fn bounded<T>(
    limit: Duration,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, op)
        .await
        .map_err(|_| StoreError::Timeout(limit))?
}

/// What the handshake needs to know of a user and the token's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRow {
    pub user_type: String,
    pub status: String,
    pub org_id: Option<String>,
    /// `None` when no session has this `jti`.
    pub session: Option<SessionRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub session_type: Option<String>,
    pub revoked: bool,
    /// `access_token_expires_at` is set and not in the future (database clock).
    pub access_expired: bool,
    /// `access_token_expires_at` in milliseconds since the epoch, when set.
    pub access_expires_at_ms: Option<i64>,
}

/// Sessions of connected sockets by `jti`, for re-validation: one query for a whole batch.
const SESSIONS_SQL: &str = "\
SELECT jti, user_id, revoked,
       (access_token_expires_at IS NOT NULL AND access_token_expires_at <= now())
FROM sessions
WHERE jti = ANY($1)";

/// A session as re-validation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStanding {
    pub jti: String,
    pub user_id: Uuid,
    pub revoked: bool,
    /// `access_token_expires_at` is set and not in the future (database clock).
    pub access_expired: bool,
}

/// The identity store, read by handshakes.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Builds the pool without connecting: a database that is down at start-up only makes the
    /// replica not-ready.
    pub fn new(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let mut pg = tokio_postgres::Config::from_str(settings.url.expose())?;
        // A database host that drops packets must not hold a connection attempt for minutes.
        pg.connect_timeout(POOL_TIMEOUT);
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()?;
        Ok(Self { pool })
    }

    /// The user `user_id` and the session whose `jti` is `sid`; `None` when there is no such user.
    pub async fn identity(
        &self,
        user_id: Uuid,
        sid: &str,
    ) -> Result<Option<IdentityRow>, StoreError> {
        // A burst of handshakes queues for a connection (bounded by the pool's wait timeout);
        // the query itself is bounded on its own.
        let client = self.pool.get().await?;
        let row = bounded(QUERY_TIMEOUT, async {
            let stmt = client.prepare_cached(IDENTITY_SQL).await?;
            Ok(client.query_opt(&stmt, &[&user_id, &sid]).await?)
        })
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let session = match row.try_get::<_, Option<Uuid>>(3)? {
            None => None,
            Some(id) => Some(SessionRow {
                id,
                user_id: row.try_get(4)?,
                session_type: row.try_get(5)?,
                revoked: row.try_get(6)?,
                access_expired: row.try_get::<_, Option<bool>>(7)?.unwrap_or(false),
                access_expires_at_ms: row.try_get(8)?,
            }),
        };
        Ok(Some(IdentityRow {
            user_type: row.try_get(0)?,
            status: row.try_get(1)?,
            org_id: row.try_get(2)?,
            session,
        }))
    }

    /// The sessions among `jtis` that exist (one round trip; a missing one is gone).
    pub async fn sessions(&self, jtis: &[String]) -> Result<Vec<SessionStanding>, StoreError> {
        let client = self.pool.get().await?;
        bounded(BATCH_TIMEOUT, async {
            let stmt = client.prepare_cached(SESSIONS_SQL).await?;
            let rows = client.query(&stmt, &[&jtis]).await?;
            rows.iter()
                .map(|row| {
                    Ok(SessionStanding {
                        jti: row.try_get(0)?,
                        user_id: row.try_get(1)?,
                        revoked: row.try_get(2)?,
                        access_expired: row.try_get::<_, Option<bool>>(3)?.unwrap_or(false),
                    })
                })
                .collect()
        })
        .await
    }

    /// The pool's connections now (metrics).
    pub fn usage(&self) -> crate::telemetry::metrics::PoolUsage {
        let status = self.pool.status();
        crate::telemetry::metrics::PoolUsage {
            idle: status.available,
            in_use: status.size.saturating_sub(status.available),
            max: status.max_size,
        }
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        bounded(QUERY_TIMEOUT, async {
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
        .await
    }
}
