//! The one error type of the queue boundary.

use crate::envelope::EnvelopeError;

/// Everything a [`ReliableQueue`](crate::ReliableQueue) operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached or refused a command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The SQLite database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite schema could not be migrated.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A job could not be sealed, or an id or key is invalid.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// A queue or worker name is not `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
    #[error("invalid {what} name `{name}`")]
    InvalidName { what: &'static str, name: String },
    /// A dead job whose signature never verified cannot be requeued.
    #[error("dead job `{id}` cannot be requeued: {reason}")]
    NotRequeueable { id: String, reason: String },
    /// Stored queue data is not what this code wrote.
    #[error("corrupt queue data: {0}")]
    Corrupt(String),
    /// The SQLite file or Redis could not be opened; names the file or host, never the URL.
    #[error(transparent)]
    Connect(#[from] plumbing::connect::ConnectError),
    /// Bad queue configuration.
    #[error("invalid queue configuration: {0}")]
    Config(String),
}
