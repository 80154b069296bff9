//! SQLite backend: the embedded default (one file under `./data/`, WAL mode).

use plumbing::connect::{OtherMigrations, embedded_migrator, open_sqlite, sqlite_options};
use sqlx::Row;
use sqlx::sqlite::{SqlitePoolOptions, SqliteSynchronous};
use time::OffsetDateTime;
use uuid::Uuid;

use super::sql::{impl_sql_store, transcription_columns};
use super::*;

/// [`TranscriptionStore`] on a SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    /// One connection for all writes: writers queue here (async, in order) instead of in
    /// SQLite's busy handler.
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

    /// The migrations of this store, in order; the auth server may keep its own (versions
    /// below 1000) in the same database.
    fn migrator() -> sqlx::migrate::Migrator {
        embedded_migrator(
            &[
                (
                    1001,
                    "transcriptions",
                    include_str!(
                        "../../../migrations/transcription-api/sqlite/1001_transcriptions.sql"
                    ),
                ),
                (
                    1003,
                    "notification",
                    include_str!(
                        "../../../migrations/transcription-api/sqlite/1003_notification.sql"
                    ),
                ),
                (
                    1004,
                    "outbox in flight requeue",
                    include_str!(
                        "../../../migrations/transcription-api/sqlite/1004_outbox_in_flight_requeue.sql"
                    ),
                ),
                (
                    1005,
                    "attempts",
                    include_str!("../../../migrations/transcription-api/sqlite/1005_attempts.sql"),
                ),
            ],
            OtherMigrations::Ignore,
        )
    }
}

impl_sql_store!(SqliteStore, sqlx::Sqlite);
