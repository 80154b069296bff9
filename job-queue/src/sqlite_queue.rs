//! [`ReliableQueue`] on an embedded SQLite file (one-process mode and tests).
//!
//! One table, `queue_jobs`, holds every pending job with its state (`ready`, `processing`,
//! `delayed`, `dead`); `queue_workers` holds heartbeats. Schema:
//! `migrations/job-queue/sqlite/`. Give the queue its own database file (e.g.
//! `sqlite:data/queue.db`): it keeps its own `_sqlx_migrations` history.
//!
//! * reserve is one `UPDATE … WHERE rowid = (SELECT … ORDER BY seq LIMIT 1) RETURNING`, so
//!   SQLite's single writer guarantees that no two workers claim the same row; the claim
//!   records the worker and a fresh reservation token, which `ack`/`fail`/`release` must match.
//! * A waiting reserve is woken at once by jobs enqueued (or promoted, reaped, released,
//!   requeued) through the same `SqliteQueue`, and polls every `poll_interval` for jobs written
//!   by other processes.
//! * Multi-statement operations run in `BEGIN IMMEDIATE` transactions (no lock upgrades).
//! * The stored job is read as bytes: a row whose job cannot be opened (oversized, not UTF-8
//!   or a BLOB, not JSON, wrong shape, bad signature, id not the row's) is moved to the dead
//!   list with the reason by `reserve` and by `held`; no row makes them fail.
//! * `synchronous = FULL` in WAL mode: a committed job survives a crash of the process or of
//!   the machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use plumbing::connect::{OtherMigrations, embedded_migrator, open_sqlite, sqlite_options};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::Notify;

use crate::envelope::{Envelope, JobId, SigningKey, dead_text, now_ms, peek_unverified_bytes};
use crate::error::QueueError;
use crate::queue::{
    DeadJob, Enqueued, FailOutcome, NewJob, QueueConfig, QueueStats, ReliableQueue, Reserved,
    buried_reason, check_marker, check_name, exhausted_reason,
};

/// [`ReliableQueue`] on SQLite. Cheap to clone; clones share the pool and the wake-ups.
#[derive(Clone)]
pub struct SqliteQueue {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    key: SigningKey,
    config: QueueConfig,
    /// Wakes waiting `reserve` calls when a job becomes ready in this process.
    ready: Notify,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl SqliteQueue {
    /// Opens (creating if needed) the database at a `sqlite:` URL. Call [`migrate`](Self::migrate)
    /// before use.
    pub async fn connect(
        url: &str,
        key: SigningKey,
        config: QueueConfig,
    ) -> Result<Self, QueueError> {
        config.validate()?;
        let options = sqlite_options(url, SqliteSynchronous::Full)?;
        let pool = open_sqlite(options, SqlitePoolOptions::new().max_connections(4)).await?;
        Ok(SqliteQueue {
            inner: Arc::new(Inner {
                pool,
                key,
                config,
                ready: Notify::new(),
            }),
        })
    }

    /// Applies the embedded migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), QueueError> {
        migrator().run(&self.inner.pool).await?;
        Ok(())
    }

    fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    fn wake(&self) {
        self.inner.ready.notify_waiters();
    }

    /// Claims the front ready job of `queue`.
    async fn claim(&self, queue: &str, worker: &str) -> Result<Option<HeldRow>, QueueError> {
        let reservation = uuid::Uuid::new_v4().to_string();
        let row = sqlx::query(
            "UPDATE queue_jobs SET state = 'processing', worker = $1, reservation = $2, reserved_at = $3 \
             WHERE rowid = (SELECT rowid FROM queue_jobs WHERE queue = $4 AND state = 'ready' \
                            ORDER BY seq LIMIT 1) \
             RETURNING rowid, CAST(id AS BLOB) AS id, CAST(job AS BLOB) AS job, \
                       CAST(reservation AS BLOB) AS reservation",
        )
        .bind(worker)
        .bind(&reservation)
        .bind(now_ms())
        .bind(queue)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(HeldRow::read).transpose()
    }

    /// Verifies a held row; `Err(reason)` when it must be rejected.
    fn verify(&self, row: &HeldRow) -> Result<Envelope, String> {
        let (envelope, _) = self
            .inner
            .key
            .open_bytes(row.job.clone())
            .map_err(|e| e.to_string())?;
        if envelope.id.as_str().as_bytes() != row.id.as_slice() {
            return Err("envelope id does not match the stored job id".into());
        }
        Ok(envelope)
    }

    /// Moves a held row that failed verification to the dead list (unless it changed hands).
    async fn reject(&self, queue: &str, row: &HeldRow, reason: &str) -> Result<(), QueueError> {
        let claimed = peek_unverified_bytes(&row.job);
        let id = String::from_utf8_lossy(&row.id);
        tracing::warn!(queue, %id, reason, "rejected job moved to the dead list");
        // The job is rewritten as text (a lossy preview when it was not UTF-8 or oversized),
        // so the dead list can always be read back.
        sqlx::query(
            "UPDATE queue_jobs SET state = 'dead', reason = $1, died_at = $2, verified = 0, \
             kind = COALESCE($3, kind), job = $4, worker = NULL, reservation = NULL, \
             reserved_at = NULL \
             WHERE rowid = $5 AND state = 'processing' AND CAST(reservation AS BLOB) IS $6",
        )
        .bind(reason)
        .bind(now_ms())
        .bind(claimed.kind)
        .bind(dead_text(&row.job))
        .bind(row.rowid)
        .bind(row.reservation.as_deref())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

impl SqliteQueue {
    /// Moves a held job to the dead list with `reason`.
    async fn to_dead(
        &self,
        job: &Reserved,
        attempt: u32,
        reason: &str,
    ) -> Result<FailOutcome, QueueError> {
        let done = sqlx::query(
            "UPDATE queue_jobs SET state = 'dead', attempt = $1, reason = $2, died_at = $3, \
             verified = 1, worker = NULL, reservation = NULL, reserved_at = NULL \
             WHERE queue = $4 AND id = $5 AND state = 'processing' AND reservation = $6",
        )
        .bind(to_i64(attempt))
        .bind(reason)
        .bind(now_ms())
        .bind(&job.queue)
        .bind(job.envelope.id.as_str())
        .bind(&job.receipt)
        .execute(self.pool())
        .await?;
        Ok(if done.rows_affected() > 0 {
            FailOutcome::Dead
        } else {
            FailOutcome::NotHeld
        })
    }
}

/// A processing row as stored, every user-writable column read as bytes so that no stored
/// value can make reading it fail.
struct HeldRow {
    rowid: i64,
    id: Vec<u8>,
    job: Vec<u8>,
    reservation: Option<Vec<u8>>,
}

impl HeldRow {
    fn read(row: &sqlx::sqlite::SqliteRow) -> Result<Self, QueueError> {
        Ok(HeldRow {
            rowid: row.try_get("rowid")?,
            id: row.try_get::<Option<Vec<u8>>, _>("id")?.unwrap_or_default(),
            job: row
                .try_get::<Option<Vec<u8>>, _>("job")?
                .unwrap_or_default(),
            reservation: row.try_get("reservation")?,
        })
    }

    /// The reservation token (the receipt of a verified job).
    fn receipt(&self) -> String {
        String::from_utf8_lossy(self.reservation.as_deref().unwrap_or_default()).into_owned()
    }
}

/// The queue's migrations, in order. The queue keeps its own database file, so a migration it
/// does not know means a newer binary migrated it: refused.
fn migrator() -> sqlx::migrate::Migrator {
    embedded_migrator(
        &[
            (
                1,
                "queue",
                include_str!("../../migrations/job-queue/sqlite/0001_queue.sql"),
            ),
            (
                2,
                "markers",
                include_str!("../../migrations/job-queue/sqlite/0002_markers.sql"),
            ),
        ],
        OtherMigrations::Refuse,
    )
}

fn lossy(bytes: Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
}

fn to_i64(n: u32) -> i64 {
    i64::from(n)
}

fn to_u32(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl ReliableQueue for SqliteQueue {
    async fn enqueue_job(&self, queue: &str, job: NewJob) -> Result<Enqueued, QueueError> {
        check_name("queue", queue)?;
        let id = job.id.unwrap_or_else(JobId::random);
        let envelope = Envelope::new(id.clone(), job.kind, job.payload);
        let wire = self.inner.key.seal(&envelope)?;
        let done = sqlx::query(
            "INSERT INTO queue_jobs (queue, id, state, seq, job, kind, attempt, enqueued_at) \
             VALUES ($1, $2, 'ready', (SELECT COALESCE(MAX(seq), 0) + 1 FROM queue_jobs), $3, $4, 0, $5) \
             ON CONFLICT (queue, id) DO NOTHING",
        )
        .bind(queue)
        .bind(id.as_str())
        .bind(&wire)
        .bind(&envelope.kind)
        .bind(envelope.enqueued_at)
        .execute(self.pool())
        .await?;
        let duplicate = done.rows_affected() == 0;
        if !duplicate {
            self.wake();
        }
        Ok(Enqueued { id, duplicate })
    }

    async fn reserve(
        &self,
        queue: &str,
        worker_id: &str,
        wait: Duration,
    ) -> Result<Option<Reserved>, QueueError> {
        check_name("queue", queue)?;
        check_name("worker", worker_id)?;
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a job enqueued in between still wakes us.
            let woken = self.inner.ready.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(row) = self.claim(queue, worker_id).await? {
                match self.verify(&row) {
                    Ok(envelope) => {
                        return Ok(Some(Reserved {
                            queue: queue.to_owned(),
                            worker_id: worker_id.to_owned(),
                            envelope,
                            receipt: row.receipt(),
                        }));
                    }
                    Err(reason) => {
                        self.reject(queue, &row, &reason).await?;
                        continue;
                    }
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(None);
            }
            let nap = remaining.min(self.inner.config.poll_interval);
            // Either a wake-up or the end of the nap: both mean "look again".
            let _ = tokio::time::timeout(nap, woken).await;
        }
    }

    async fn ack(&self, job: &Reserved) -> Result<bool, QueueError> {
        let done = sqlx::query(
            "DELETE FROM queue_jobs \
             WHERE queue = $1 AND id = $2 AND state = 'processing' AND reservation = $3",
        )
        .bind(&job.queue)
        .bind(job.envelope.id.as_str())
        .bind(&job.receipt)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn bury(&self, job: &Reserved, error: &str) -> Result<FailOutcome, QueueError> {
        let attempt = job.envelope.attempt.saturating_add(1);
        self.to_dead(job, attempt, &buried_reason(error)).await
    }

    async fn set_marker(&self, name: &str, ttl: Duration) -> Result<bool, QueueError> {
        check_marker(name)?;
        let now = now_ms();
        // An expired marker is taken over; a live one is left alone.
        let done = sqlx::query(
            "INSERT INTO queue_markers (name, expires_at) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE queue_markers.expires_at <= $3",
        )
        .bind(name)
        .bind(now.saturating_add(duration_ms(ttl)))
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn has_marker(&self, name: &str) -> Result<bool, QueueError> {
        check_marker(name)?;
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM queue_markers WHERE name = $1 AND expires_at > $2")
                .bind(name)
                .bind(now_ms())
                .fetch_optional(self.pool())
                .await?;
        Ok(found.is_some())
    }

    async fn fail(&self, job: &Reserved, error: &str) -> Result<FailOutcome, QueueError> {
        let config = &self.inner.config;
        let attempt = job.envelope.attempt.saturating_add(1);
        if attempt >= config.max_attempts {
            return self
                .to_dead(job, attempt, &exhausted_reason(config.max_attempts, error))
                .await;
        }
        let delay = config.backoff(attempt);
        let retry = Envelope {
            attempt,
            ..job.envelope.clone()
        };
        let wire = self.inner.key.seal(&retry)?;
        let done = sqlx::query(
            "UPDATE queue_jobs SET state = 'delayed', job = $1, attempt = $2, due_at = $3, \
             worker = NULL, reservation = NULL, reserved_at = NULL \
             WHERE queue = $4 AND id = $5 AND state = 'processing' AND reservation = $6",
        )
        .bind(&wire)
        .bind(to_i64(attempt))
        .bind(now_ms().saturating_add(duration_ms(delay)))
        .bind(&job.queue)
        .bind(job.envelope.id.as_str())
        .bind(&job.receipt)
        .execute(self.pool())
        .await?;
        Ok(if done.rows_affected() > 0 {
            FailOutcome::Retrying { attempt, delay }
        } else {
            FailOutcome::NotHeld
        })
    }

    async fn release(&self, job: &Reserved) -> Result<bool, QueueError> {
        let done = sqlx::query(
            "UPDATE queue_jobs SET state = 'ready', \
             seq = (SELECT COALESCE(MIN(seq), 0) - 1 FROM queue_jobs), \
             worker = NULL, reservation = NULL, reserved_at = NULL \
             WHERE queue = $1 AND id = $2 AND state = 'processing' AND reservation = $3",
        )
        .bind(&job.queue)
        .bind(job.envelope.id.as_str())
        .bind(&job.receipt)
        .execute(self.pool())
        .await?;
        let released = done.rows_affected() > 0;
        if released {
            self.wake();
        }
        Ok(released)
    }

    async fn held(&self, queue: &str, worker_id: &str) -> Result<Vec<Reserved>, QueueError> {
        check_name("queue", queue)?;
        check_name("worker", worker_id)?;
        let rows = sqlx::query(
            "SELECT rowid, CAST(id AS BLOB) AS id, CAST(job AS BLOB) AS job, \
                    CAST(reservation AS BLOB) AS reservation FROM queue_jobs \
             WHERE state = 'processing' AND worker = $1 AND queue = $2 \
             ORDER BY reserved_at, seq",
        )
        .bind(worker_id)
        .bind(queue)
        .fetch_all(self.pool())
        .await?;
        let mut held = Vec::with_capacity(rows.len());
        for row in &rows {
            let row = HeldRow::read(row)?;
            match self.verify(&row) {
                Ok(envelope) => held.push(Reserved {
                    queue: queue.to_owned(),
                    worker_id: worker_id.to_owned(),
                    envelope,
                    receipt: row.receipt(),
                }),
                Err(reason) => self.reject(queue, &row, &reason).await?,
            }
        }
        Ok(held)
    }

    async fn heartbeat(&self, worker_id: &str, ttl: Duration) -> Result<(), QueueError> {
        check_name("worker", worker_id)?;
        sqlx::query(
            "INSERT INTO queue_workers (worker, alive_until) VALUES ($1, $2) \
             ON CONFLICT (worker) DO UPDATE SET alive_until = excluded.alive_until",
        )
        .bind(worker_id)
        .bind(now_ms().saturating_add(duration_ms(ttl)))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn retire(&self, worker_id: &str) -> Result<(), QueueError> {
        check_name("worker", worker_id)?;
        sqlx::query("DELETE FROM queue_workers WHERE worker = $1")
            .bind(worker_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn reap(&self) -> Result<u64, QueueError> {
        let now = now_ms();
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        // Newest reservation first, so the oldest one ends up frontmost.
        let orphans = sqlx::query(
            "SELECT rowid FROM queue_jobs AS j WHERE state = 'processing' \
             AND NOT EXISTS (SELECT 1 FROM queue_workers AS w \
                             WHERE w.worker = j.worker AND w.alive_until > $1) \
             ORDER BY reserved_at DESC, seq DESC",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut moved = 0u64;
        if !orphans.is_empty() {
            let front: i64 = sqlx::query("SELECT COALESCE(MIN(seq), 0) AS front FROM queue_jobs")
                .fetch_one(&mut *tx)
                .await?
                .try_get("front")?;
            for (offset, row) in (1i64..).zip(&orphans) {
                // By rowid: the transaction holds the write lock, and no stored value (a
                // foreign id, say) can make reading the orphans fail.
                let done = sqlx::query(
                    "UPDATE queue_jobs SET state = 'ready', seq = $1, worker = NULL, \
                     reservation = NULL, reserved_at = NULL \
                     WHERE rowid = $2 AND state = 'processing'",
                )
                .bind(front - offset)
                .bind(row.try_get::<i64, _>("rowid")?)
                .execute(&mut *tx)
                .await?;
                moved += done.rows_affected();
            }
        }
        sqlx::query("DELETE FROM queue_workers WHERE alive_until <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if moved > 0 {
            tracing::info!(jobs = moved, "returned jobs of dead workers");
            self.wake();
        }
        Ok(moved)
    }

    async fn promote_due(&self, queue: &str) -> Result<u64, QueueError> {
        check_name("queue", queue)?;
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let due = sqlx::query(
            "SELECT rowid FROM queue_jobs WHERE queue = $1 AND state = 'delayed' AND due_at <= $2 \
             ORDER BY due_at, seq",
        )
        .bind(queue)
        .bind(now_ms())
        .fetch_all(&mut *tx)
        .await?;
        let mut moved = 0u64;
        if !due.is_empty() {
            let back: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS back FROM queue_jobs")
                .fetch_one(&mut *tx)
                .await?
                .try_get("back")?;
            for (offset, row) in (1i64..).zip(&due) {
                let done = sqlx::query(
                    "UPDATE queue_jobs SET state = 'ready', seq = $1, due_at = NULL \
                     WHERE rowid = $2 AND state = 'delayed'",
                )
                .bind(back + offset)
                .bind(row.try_get::<i64, _>("rowid")?)
                .execute(&mut *tx)
                .await?;
                moved += done.rows_affected();
            }
        }
        tx.commit().await?;
        if moved > 0 {
            self.wake();
        }
        Ok(moved)
    }

    async fn dead(&self, queue: &str) -> Result<Vec<DeadJob>, QueueError> {
        check_name("queue", queue)?;
        let rows = sqlx::query(
            "SELECT CAST(id AS BLOB) AS id, CAST(kind AS BLOB) AS kind, attempt, reason, died_at, \
                    verified, CAST(job AS BLOB) AS job FROM queue_jobs \
             WHERE queue = $1 AND state = 'dead' ORDER BY died_at DESC, rowid DESC",
        )
        .bind(queue)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadJob {
                    // A rejected row keeps whatever id and kind a foreign writer stored.
                    id: lossy(row.try_get::<Option<Vec<u8>>, _>("id")?),
                    kind: row
                        .try_get::<Option<Vec<u8>>, _>("kind")?
                        .map(|kind| lossy(Some(kind))),
                    attempt: to_u32(row.try_get("attempt")?),
                    reason: row
                        .try_get::<Option<String>, _>("reason")?
                        .unwrap_or_default(),
                    died_at: row
                        .try_get::<Option<i64>, _>("died_at")?
                        .unwrap_or_default(),
                    verified: row.try_get("verified")?,
                    job: dead_text(
                        &row.try_get::<Option<Vec<u8>>, _>("job")?
                            .unwrap_or_default(),
                    ),
                })
            })
            .collect()
    }

    async fn requeue_dead(&self, queue: &str, id: &str) -> Result<bool, QueueError> {
        check_name("queue", queue)?;
        let row = sqlx::query(
            "SELECT verified, reason, job FROM queue_jobs \
             WHERE queue = $1 AND id = $2 AND state = 'dead'",
        )
        .bind(queue)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let not_requeueable = |reason: String| QueueError::NotRequeueable {
            id: id.to_owned(),
            reason,
        };
        if !row.try_get::<bool, _>("verified")? {
            return Err(not_requeueable(
                row.try_get::<Option<String>, _>("reason")?
                    .unwrap_or_default(),
            ));
        }
        let stored = String::from_utf8(row.try_get::<Vec<u8>, _>("job")?)
            .map_err(|_| not_requeueable("stored job is not UTF-8".into()))?;
        let mut envelope = self
            .inner
            .key
            .open(&stored)
            .map_err(|e| not_requeueable(e.to_string()))?;
        envelope.attempt = 0;
        let wire = self.inner.key.seal(&envelope)?;
        let done = sqlx::query(
            "UPDATE queue_jobs SET state = 'ready', job = $1, attempt = 0, \
             seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM queue_jobs), \
             reason = NULL, died_at = NULL \
             WHERE queue = $2 AND id = $3 AND state = 'dead' AND job = $4",
        )
        .bind(&wire)
        .bind(queue)
        .bind(id)
        .bind(&stored)
        .execute(self.pool())
        .await?;
        let requeued = done.rows_affected() > 0;
        if requeued {
            self.wake();
        }
        Ok(requeued)
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, QueueError> {
        check_name("queue", queue)?;
        let done = sqlx::query("DELETE FROM queue_jobs WHERE queue = $1 AND state = 'dead'")
            .bind(queue)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        check_name("queue", queue)?;
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM queue_jobs WHERE queue = $1 GROUP BY state",
        )
        .bind(queue)
        .fetch_all(self.pool())
        .await?;
        let mut stats = QueueStats::default();
        for row in &rows {
            let n = to_u64(row.try_get("n")?);
            match row.try_get::<String, _>("state")?.as_str() {
                "ready" => stats.ready = n,
                "processing" => stats.processing = n,
                "delayed" => stats.delayed = n,
                "dead" => stats.dead = n,
                other => return Err(QueueError::Corrupt(format!("unknown job state `{other}`"))),
            }
        }
        Ok(stats)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }
}
