//! PostgreSQL backend: for deployments with several auth-server instances.

use std::time::Duration;

use plumbing::connect::{OtherMigrations, embedded_migrator, open_postgres};
use sqlx::Row;
use time::OffsetDateTime;

use super::sql::{
    RENORMALIZE_USER_EMAILS, family_owner_filter, impl_sql_store, release_login_attempts_sql,
    reserve_login_attempt_sql,
};
use super::*;

/// [`Store`] on a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: sqlx::PgPool,
    /// The same pool: PostgreSQL handles concurrent writers itself.
    writer: sqlx::PgPool,
}

impl PostgresStore {
    /// Connects to a `postgres://` URL.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = open_postgres(url, 16, Duration::from_secs(5)).await?;
        Ok(PostgresStore {
            writer: pool.clone(),
            pool,
        })
    }

    /// The migrations of this store, in order (the one-process stack's `--reset` drops what
    /// they create); other services may keep theirs in the same database (the one-process
    /// stack on PostgreSQL): their versions are not ours to judge.
    pub fn migrator() -> sqlx::migrate::Migrator {
        embedded_migrator(
            &[
                (
                    1,
                    "foundation",
                    include_str!("../../../migrations/auth-server/postgres/0001_foundation.sql"),
                ),
                (
                    2,
                    "users and sessions",
                    include_str!(
                        "../../../migrations/auth-server/postgres/0002_users_and_sessions.sql"
                    ),
                ),
                (
                    3,
                    "precis identifiers",
                    include_str!(
                        "../../../migrations/auth-server/postgres/0003_precis_identifiers.sql"
                    ),
                ),
                (
                    4,
                    "revocation reach",
                    include_str!(
                        "../../../migrations/auth-server/postgres/0004_revocation_reach.sql"
                    ),
                ),
                (
                    5,
                    "sealed secrets",
                    include_str!(
                        "../../../migrations/auth-server/postgres/0005_sealed_secrets.sql"
                    ),
                ),
                (
                    6,
                    "key per algorithm",
                    include_str!(
                        "../../../migrations/auth-server/postgres/0006_key_per_algorithm.sql"
                    ),
                ),
                (
                    7,
                    "sign-in",
                    include_str!("../../../migrations/auth-server/postgres/0007_signin.sql"),
                ),
            ],
            OtherMigrations::Ignore,
        )
    }
}

impl_sql_store!(PostgresStore, sqlx::Postgres);
