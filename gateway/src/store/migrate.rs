//! `gateway migrate`: creates the database when missing, then applies the embedded schema.
//!
//! Migrations are numbered and recorded in `gateway_schema_migrations`; each runs once, in a
//! transaction, under an advisory lock so replicas migrating at once do not race.

use std::str::FromStr;

use anyhow::Context;
use tokio_postgres::{Client, NoTls, error::SqlState};

use crate::config::DatabaseSettings;

/// Every migration, in order. Append only: an applied migration is never edited.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "users and sessions",
    include_str!("migrations/0001_users_sessions.sql"),
)];

/// An arbitrary constant naming the gateway's migration lock.
const MIGRATION_LOCK: i64 = 0x6761_7465_7761_7901;

#[derive(Debug, PartialEq, Eq)]
pub struct MigrationReport {
    pub database_created: bool,
    pub applied: Vec<i32>,
}

pub async fn run(settings: &DatabaseSettings) -> anyhow::Result<MigrationReport> {
    let config = tokio_postgres::Config::from_str(settings.url.expose())
        .context("DATABASE_URL is not a valid postgres URL")?;
    let database_created = ensure_database(&config).await?;
    let mut client = connect(&config).await?;
    let applied = apply(&mut client).await?;
    Ok(MigrationReport {
        database_created,
        applied,
    })
}

async fn connect(config: &tokio_postgres::Config) -> anyhow::Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .context("cannot connect to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "migration connection closed");
        }
    });
    Ok(client)
}

/// Creates the target database through the `postgres` maintenance database when it is missing.
async fn ensure_database(config: &tokio_postgres::Config) -> anyhow::Result<bool> {
    let name = match config.get_dbname() {
        Some(name) => name.to_owned(),
        // libpq's rule: the database defaults to the user's name, which then exists or not.
        None => config.get_user().unwrap_or("postgres").to_owned(),
    };
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect(&admin).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .context("cannot list databases")?
        .is_some();
    if exists {
        return Ok(false);
    }
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await
    {
        Ok(()) => Ok(true),
        // Another migrate created it in between: fine.
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create database {quoted}")),
    }
}

async fn apply(client: &mut Client) -> anyhow::Result<Vec<i32>> {
    // "already exists, skipping" notices are expected on every run after the first.
    client
        .batch_execute("SET client_min_messages = warning")
        .await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("cannot take the migration lock")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS gateway_schema_migrations (
            version integer PRIMARY KEY,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM gateway_schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut applied = Vec::new();
    for (version, description, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("migration {version} ({description}) failed"))?;
        tx.execute(
            "INSERT INTO gateway_schema_migrations (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}
