//! SQLite backend: the embedded default (one file under `./data/`, WAL mode).

use std::str::FromStr;
use std::time::Duration;

use plumbing::connect::open_sqlite;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use time::OffsetDateTime;
use uuid::Uuid;

use super::sql::{impl_sql_store, migrator, transcription_columns};
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
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool =
            open_sqlite(options.clone(), SqlitePoolOptions::new().max_connections(8)).await?;
        let writer = open_sqlite(options, SqlitePoolOptions::new().max_connections(1)).await?;
        Ok(SqliteStore { pool, writer })
    }

    fn migrator() -> sqlx::migrate::Migrator {
        migrator(&[
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
                include_str!("../../../migrations/transcription-api/sqlite/1003_notification.sql"),
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
        ])
    }
}

impl_sql_store!(SqliteStore, sqlx::Sqlite);
