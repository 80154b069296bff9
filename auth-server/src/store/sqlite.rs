//! SQLite backend: the embedded default (one file under `./data/`, WAL mode).

use plumbing::connect::{OtherMigrations, embedded_migrator, open_sqlite, sqlite_options};
use sqlx::Row;
use sqlx::sqlite::{SqlitePoolOptions, SqliteSynchronous};
use time::OffsetDateTime;

use super::sql::{
    RENORMALIZE_USER_EMAILS, family_owner_filter, impl_sql_store, release_login_attempts_sql,
    reserve_login_attempt_sql,
};
use super::*;

/// [`Store`] on a SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    /// One connection for all writes: writers queue here (async, in order) instead of in
    /// SQLite's busy handler, whose sleeps would add up to 100 ms to a contended write.
    writer: sqlx::SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at a `sqlite:` URL.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = sqlite_options(url, SqliteSynchronous::Normal)?;
        let pool =
            open_sqlite(options.clone(), SqlitePoolOptions::new().max_connections(8)).await?;
        let writer = open_sqlite(options, SqlitePoolOptions::new().max_connections(1)).await?;
        Ok(SqliteStore { pool, writer })
    }

    /// The migrations of this store, in order; other services may keep theirs in the same
    /// database.
    fn migrator() -> sqlx::migrate::Migrator {
        embedded_migrator(
            &[
                (
                    1,
                    "foundation",
                    include_str!("../../../migrations/auth-server/sqlite/0001_foundation.sql"),
                ),
                (
                    2,
                    "users and sessions",
                    include_str!(
                        "../../../migrations/auth-server/sqlite/0002_users_and_sessions.sql"
                    ),
                ),
                (
                    3,
                    "precis identifiers",
                    include_str!(
                        "../../../migrations/auth-server/sqlite/0003_precis_identifiers.sql"
                    ),
                ),
                (
                    4,
                    "revocation reach",
                    include_str!(
                        "../../../migrations/auth-server/sqlite/0004_revocation_reach.sql"
                    ),
                ),
                (
                    5,
                    "sealed secrets",
                    include_str!("../../../migrations/auth-server/sqlite/0005_sealed_secrets.sql"),
                ),
                (
                    6,
                    "key per algorithm",
                    include_str!(
                        "../../../migrations/auth-server/sqlite/0006_key_per_algorithm.sql"
                    ),
                ),
                (
                    7,
                    "sign-in",
                    include_str!("../../../migrations/auth-server/sqlite/0007_signin.sql"),
                ),
            ],
            OtherMigrations::Ignore,
        )
    }
}

impl_sql_store!(SqliteStore, sqlx::Sqlite);
