//! Storage of transcriptions behind one trait ([`TranscriptionStore`]) with a SQLite and a
//! PostgreSQL implementation sharing their SQL ([`sql`]). Besides the records it keeps the
//! outbox (jobs written but not yet confirmed queued) and the idempotency keys.

mod postgres;
mod sql;
mod sqlite;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use contracts::report::{NotificationReport, ResultReport};
use plumbing::connect::Backend;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Where a transcription is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Processing,
    Completed,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Processing => "processing",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }

    /// Completed or failed: nothing changes it any more.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed)
    }

    fn parse(value: &str) -> Result<Status, StoreError> {
        match value {
            "queued" => Ok(Status::Queued),
            "processing" => Ok(Status::Processing),
            "completed" => Ok(Status::Completed),
            "failed" => Ok(Status::Failed),
            other => Err(StoreError::Corrupt(format!("unknown status `{other}`"))),
        }
    }
}

/// The status a worker report moves a transcription to.
impl From<&ResultReport> for Status {
    fn from(report: &ResultReport) -> Status {
        match report {
            ResultReport::Processing => Status::Processing,
            ResultReport::Completed { .. } => Status::Completed,
            ResultReport::Failed { .. } => Status::Failed,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the owner was told by e-mail, as the notifier reported it: the `notification` object
/// of a transcription, `{"status": "pending"}` until `{"status": "sent"}` or
/// `{"status": "failed", "reason": "…"}`. Sent and failed are final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Notification {
    /// Not reported yet (the transcription is still running, or the e-mail is being sent).
    Pending,
    /// The mail server accepted the e-mail.
    Sent,
    /// The e-mail could not be delivered (a permanent SMTP refusal, or retries exhausted).
    Failed {
        /// Why, as the notifier saw it.
        #[schema(example = "550 5.1.1 mailbox unavailable")]
        reason: String,
    },
}

/// The state a notifier report makes final.
impl From<NotificationReport> for Notification {
    fn from(report: NotificationReport) -> Notification {
        match report {
            NotificationReport::Sent => Notification::Sent,
            NotificationReport::Failed { reason } => Notification::Failed { reason },
        }
    }
}

impl Notification {
    /// The stored `notification` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            Notification::Pending => "pending",
            Notification::Sent => "sent",
            Notification::Failed { .. } => "failed",
        }
    }

    /// The stored `notification_reason` column.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Notification::Failed { reason } => Some(reason),
            Notification::Pending | Notification::Sent => None,
        }
    }

    fn parse(status: &str, reason: Option<String>) -> Result<Notification, StoreError> {
        match (status, reason) {
            ("pending", _) => Ok(Notification::Pending),
            ("sent", _) => Ok(Notification::Sent),
            ("failed", reason) => Ok(Notification::Failed {
                reason: reason.unwrap_or_default(),
            }),
            (other, _) => Err(StoreError::Corrupt(format!(
                "unknown notification `{other}`"
            ))),
        }
    }
}

/// What [`TranscriptionStore::report_notification`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// The notification was pending and now is final.
    Applied,
    /// It already was exactly this (a repeated report).
    Unchanged,
    /// It is final with another state or reason: it stays so.
    Conflict(Notification),
    NotFound,
}

/// One transcription request and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcription {
    pub id: Uuid,
    /// The token `sub` that created it: the only caller who may read it.
    pub owner: String,
    /// The client application the creating token was issued to.
    pub client_id: String,
    /// Where the result is e-mailed.
    pub email: String,
    pub audio_url: String,
    pub status: Status,
    /// Set once completed.
    pub transcript: Option<String>,
    /// Set once failed.
    pub error: Option<String>,
    /// Whether the owner was told by e-mail; [`Notification::Pending`] at creation.
    pub notification: Notification,
    /// 1 at submission, one more each time the owner retries it after it failed
    /// ([`TranscriptionStore::retry`]); each attempt is its own transcribe job
    /// ([`contracts::jobs::attempt_key`]).
    pub attempt: u32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// An `Idempotency-Key` as stored: scoped to its owner, with a hash of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub owner: String,
    pub key: String,
    /// Hex SHA-256 of the validated request fields.
    pub request_hash: String,
    /// Until when (unix milliseconds) the request that wrote the key is still in flight; a
    /// replay before then gets 409 (IETF Idempotency-Key draft, section 2.6). The request sets
    /// it to 0 once it has answered ([`TranscriptionStore::settle_idempotency_key`]); a request
    /// that died lets it lapse.
    pub in_flight_until_ms: i64,
}

/// The earlier request that holds an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierRequest {
    pub transcription_id: Uuid,
    /// Whether the earlier request had the same hash.
    pub same_request: bool,
    /// The earlier request's [`IdempotencyKey::in_flight_until_ms`].
    pub in_flight_until_ms: i64,
}

/// The result of [`TranscriptionStore::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// The record and its outbox entry were written.
    Created,
    /// The idempotency key was used before: nothing was written.
    Replayed(EarlierRequest),
}

/// The result of [`TranscriptionStore::retry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// The record is `queued` again as its next attempt, notification `pending`, with a fresh
    /// outbox entry: the record as it is now.
    Queued(Transcription),
    /// The idempotency key was used before: nothing was written.
    Replayed(EarlierRequest),
    /// Only a `failed` record can be retried; this one is in this state, unchanged.
    NotFailed(Status),
    /// No record with this id belongs to this owner.
    NotFound,
}

/// What [`TranscriptionStore::report`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// The status changed.
    Applied,
    /// The transcription already was in exactly this state (a repeated report).
    Unchanged,
    /// The transcription is final with a different result (or the report would move it back).
    Conflict(Status),
    NotFound,
}

/// A page of a caller's transcriptions, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Transcription>,
    /// The last item's id: pass it as `after` to get the next page; `None` on the last one.
    pub next_cursor: Option<Uuid>,
}

/// A job to (re)queue, claimed from the outbox by the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub transcription_id: Uuid,
    pub audio_url: String,
    pub email: String,
    /// The record's attempt: which job to queue.
    pub attempt: u32,
    /// The record's status: a record that moved past `queued` was evidently queued already.
    pub status: Status,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported DATABASE_URL `{0}` (expected sqlite:… or postgres://…)")]
    UnsupportedUrl(String),
    /// The database could not be opened; names the file or host, never the URL.
    #[error(transparent)]
    Connect(#[from] plumbing::connect::ConnectError),
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

/// Transcription records, the outbox and the idempotency keys.
#[async_trait]
pub trait TranscriptionStore: Send + Sync {
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Writes a new record with its outbox entry (due for the relay at `outbox_due_ms`, unix
    /// milliseconds) and, when given, its idempotency key, in one transaction. When the key
    /// exists already nothing is written and the earlier request is described instead.
    async fn insert(
        &self,
        transcription: &Transcription,
        idempotency: Option<&IdempotencyKey>,
        outbox_due_ms: i64,
    ) -> Result<Inserted, StoreError>;

    /// Puts `owner`'s `failed` record `id` back to `queued` as its next attempt (transcript and
    /// error cleared, notification `pending`, last handed to the queue at `now`) with an
    /// outbox entry due at `outbox_due_ms`, and remembers the idempotency key when given, in
    /// one transaction. Nothing is written for another owner's or an unknown id (the same
    /// answer), a record that is not `failed`, or a key used before.
    async fn retry(
        &self,
        owner: &str,
        id: Uuid,
        idempotency: Option<&IdempotencyKey>,
        now: OffsetDateTime,
        outbox_due_ms: i64,
    ) -> Result<Retried, StoreError>;

    /// The job of `id` is queued: drops its outbox entry.
    async fn outbox_done(&self, id: Uuid) -> Result<(), StoreError>;

    /// Makes the outbox entry of `id` due at `due_ms` (the request could not queue the job
    /// itself, so the relay should at once).
    async fn outbox_due(&self, id: Uuid, due_ms: i64) -> Result<(), StoreError>;

    /// The request that wrote `owner`'s `key` has answered: replays get its result from now on.
    async fn settle_idempotency_key(&self, owner: &str, key: &str) -> Result<(), StoreError>;

    async fn get(&self, id: Uuid) -> Result<Option<Transcription>, StoreError>;

    /// `owner`'s transcriptions, newest first, `limit` per page, starting after `owner`'s
    /// transcription `after` (a page's `next_cursor`). `None` when `after` is not one of
    /// `owner`'s transcriptions.
    async fn list(
        &self,
        owner: &str,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Option<Page>, StoreError>;

    /// Applies a worker report: `queued → processing`, `queued | processing → completed | failed`.
    async fn report(
        &self,
        id: Uuid,
        report: &ResultReport,
        now: OffsetDateTime,
    ) -> Result<ReportOutcome, StoreError>;

    /// Records the notifier's report: `pending → sent | failed`; repeating the final state is
    /// [`NotificationOutcome::Unchanged`], changing it a [`NotificationOutcome::Conflict`].
    async fn report_notification(
        &self,
        id: Uuid,
        notification: &Notification,
        now: OffsetDateTime,
    ) -> Result<NotificationOutcome, StoreError>;

    /// Claims up to `limit` outbox entries due at `now_ms` by pushing their due time to
    /// `lease_until_ms`, so concurrent relays do not take the same entry.
    async fn claim_outbox(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Puts back into the outbox, due at `now_ms`, up to `limit` records still `queued` that were
    /// last handed to the queue at or before `stale_before_ms` and have no outbox entry (the
    /// queue may have lost their jobs), and marks them handed over at `now_ms`. Returns how many.
    async fn requeue_stale(
        &self,
        stale_before_ms: i64,
        now_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError>;

    /// Entries waiting in the outbox.
    async fn outbox_len(&self) -> Result<u64, StoreError>;

    /// Forgets idempotency keys created before `before_ms`. Returns how many.
    async fn purge_idempotency_keys(&self, before_ms: i64) -> Result<u64, StoreError>;
}

/// Opens the store a `DATABASE_URL` names.
pub async fn connect(url: &str) -> Result<Arc<dyn TranscriptionStore>, StoreError> {
    match Backend::of_url(url) {
        Some(Backend::Sqlite) => Ok(Arc::new(SqliteStore::connect(url).await?)),
        Some(Backend::Postgres) => Ok(Arc::new(PostgresStore::connect(url).await?)),
        None => Err(StoreError::UnsupportedUrl(redact_url(url))),
    }
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url.split_once('@') {
        Some((before, after)) => match before.rsplit_once(':') {
            Some((user, _)) if user.contains("//") => format!("{user}:***@{after}"),
            _ => format!("***@{after}"),
        },
        None => url.to_owned(),
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

fn parse_id(value: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(value)
        .map_err(|_| StoreError::Corrupt(format!("bad transcription id `{value}`")))
}
