//! PostgreSQL backend: for deployments with several API instances.

use std::time::Duration;

use plumbing::connect::{OtherMigrations, embedded_migrator, open_postgres};
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::sql::{impl_sql_store, transcription_columns};
use super::*;

/// [`TranscriptionStore`] on a PostgreSQL database.
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
    /// they create); the auth server may keep its own (versions below 1000) in the same
    /// database.
    pub fn migrator() -> sqlx::migrate::Migrator {
        embedded_migrator(
            &[
                (
                    1001,
                    "transcriptions",
                    include_str!(
                        "../../../migrations/transcription-api/postgres/1001_transcriptions.sql"
                    ),
                ),
                (
                    1003,
                    "notification",
                    include_str!(
                        "../../../migrations/transcription-api/postgres/1003_notification.sql"
                    ),
                ),
                (
                    1004,
                    "outbox in flight requeue",
                    include_str!(
                        "../../../migrations/transcription-api/postgres/1004_outbox_in_flight_requeue.sql"
                    ),
                ),
                (
                    1005,
                    "attempts",
                    include_str!(
                        "../../../migrations/transcription-api/postgres/1005_attempts.sql"
                    ),
                ),
            ],
            OtherMigrations::Ignore,
        )
    }
}

impl_sql_store!(PostgresStore, sqlx::Postgres);
