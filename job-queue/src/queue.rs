//! The [`ReliableQueue`] contract shared by the Redis and SQLite implementations, and the
//! types that cross it.
//!
//! Life of a job: `enqueue` → **ready** → `reserve` → **processing** (owned by one worker) →
//! `ack` (gone) | `fail` → **delayed** (backoff) → `promote_due` → ready … → after
//! `max_attempts` failures **dead** → `requeue_dead` → ready | `purge_dead` (gone).
//! `release` and `reap` return processing jobs to the front of ready without counting a failure.
//!
//! Delivery is at least once: a job whose worker stops heartbeating is handed to another worker,
//! so handlers must be idempotent by job id.
//!
//! Duplicate suppression: a job id is *pending* from `enqueue` until the job is acked or purged
//! from the dead list (so while it is ready, processing, delayed or dead). Enqueueing an id that
//! is pending in the same queue stores nothing and answers `Enqueued { duplicate: true }`; once
//! the job is acked (or its dead entry purged), the id may be enqueued again.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{Envelope, JobId};
use crate::error::QueueError;

/// Tuning shared by both implementations.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Deliveries before a failing job goes to the dead list (≥ 1).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles with every further failure.
    pub backoff_base: Duration,
    /// Upper bound of the backoff.
    pub backoff_max: Duration,
    /// SQLite only: how often a waiting `reserve` looks for jobs enqueued by other processes
    /// (jobs enqueued through the same `SqliteQueue` wake it at once).
    pub poll_interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            poll_interval: Duration::from_millis(200),
        }
    }
}

impl QueueConfig {
    pub(crate) fn validate(&self) -> Result<(), QueueError> {
        if self.max_attempts == 0 {
            return Err(QueueError::Config("max_attempts must be at least 1".into()));
        }
        if self.backoff_max < self.backoff_base {
            return Err(QueueError::Config(
                "backoff_max must not be below backoff_base".into(),
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(QueueError::Config("poll_interval must be positive".into()));
        }
        Ok(())
    }

    /// Delay before retry number `attempt` (1 for the first retry): exponential
    /// `base · 2^(attempt-1)` capped at `backoff_max`, with "equal jitter" (uniform in
    /// `[d/2, d]`) so that jobs failing together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let full = self
            .backoff_base
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max);
        let half = full / 2;
        let half_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let jitter_ms = if half_ms == 0 {
            0
        } else {
            // uuid's v4 generator is backed by the OS RNG; avoids another dependency.
            (uuid::Uuid::new_v4().as_u128() as u64) % (half_ms + 1)
        };
        (full - half) + Duration::from_millis(jitter_ms)
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Caller-given id for duplicate suppression; a random UUID when `None`.
    pub id: Option<JobId>,
    pub kind: String,
    pub payload: Value,
}

impl NewJob {
    /// A job with a generated id.
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        NewJob {
            id: None,
            kind: kind.into(),
            payload,
        }
    }

    /// Sets the caller-given id (see the module docs on duplicate suppression).
    pub fn with_id(mut self, id: JobId) -> Self {
        self.id = Some(id);
        self
    }
}

/// The answer to an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: JobId,
    /// The id was already pending, so nothing new was queued.
    pub duplicate: bool,
}

/// A job handed to one worker. Pass it back to `ack`, `fail` or `release`.
#[derive(Debug, Clone)]
pub struct Reserved {
    pub queue: String,
    pub worker_id: String,
    /// The verified envelope.
    pub envelope: Envelope,
    /// Implementation handle: the exact stored bytes (Redis) or the reservation token (SQLite).
    pub(crate) receipt: String,
}

/// What `fail` did with the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailOutcome {
    /// Scheduled for another delivery after `delay`; `attempt` is the new failure count.
    Retrying { attempt: u32, delay: Duration },
    /// `max_attempts` reached: moved to the dead list.
    Dead,
    /// The worker no longer held the job (it was reaped and possibly delivered again);
    /// nothing changed.
    NotHeld,
}

/// An entry of a queue's dead list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadJob {
    /// The job id; for a rejected (unverified) job, the id it claims, or a generated one.
    pub id: String,
    /// The kind the job has (or claims, when unverified).
    pub kind: Option<String>,
    /// Failed deliveries when it died.
    pub attempt: u32,
    /// Why it died: the last handler error, or why its envelope was rejected.
    pub reason: String,
    /// When it died, in Unix milliseconds.
    pub died_at: i64,
    /// Whether its signature was valid. Only verified jobs can be requeued.
    pub verified: bool,
    /// The stored job as it was when it died (wire form).
    pub job: String,
}

/// Job counts of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    pub ready: u64,
    /// Reserved by a worker and not yet acked, failed or returned.
    pub processing: u64,
    /// Waiting for their retry time (due or not, until `promote_due` moves them).
    pub delayed: u64,
    pub dead: u64,
}

/// A durable, at-least-once work queue with per-worker reservations, retries and a dead list.
///
/// Queue and worker names are 1–64 characters of `[A-Za-z0-9_.-]` starting with a letter or
/// digit. Workers call [`heartbeat`](Self::heartbeat) before their first `reserve` and then at
/// least every third of the TTL; a maintenance loop calls [`reap`](Self::reap) and
/// [`promote_due`](Self::promote_due) every few seconds (any number of processes may run it).
#[async_trait]
pub trait ReliableQueue: Send + Sync {
    /// Queues a job at the back of `queue`, or reports it as a duplicate (see module docs).
    async fn enqueue_job(&self, queue: &str, job: NewJob) -> Result<Enqueued, QueueError>;

    /// Queues a job with a generated id.
    async fn enqueue(&self, queue: &str, kind: &str, payload: Value) -> Result<JobId, QueueError> {
        Ok(self
            .enqueue_job(queue, NewJob::new(kind, payload))
            .await?
            .id)
    }

    /// Takes the oldest ready job of `queue` for `worker_id`, waiting up to `wait` for one
    /// (`Duration::ZERO`: do not wait). The move to the worker's processing area is atomic, so
    /// no two workers get the same job. Entries that cannot be opened (larger than
    /// [`MAX_JOB_BYTES`](crate::MAX_JOB_BYTES), not UTF-8, not JSON, wrong shape, bad
    /// signature) are moved to the dead list with the reason and skipped; they are never
    /// returned, and no entry, whatever its bytes, makes `reserve` fail.
    async fn reserve(
        &self,
        queue: &str,
        worker_id: &str,
        wait: Duration,
    ) -> Result<Option<Reserved>, QueueError>;

    /// Completes a job. `false` when the worker no longer held it (it was reaped).
    async fn ack(&self, job: &Reserved) -> Result<bool, QueueError>;

    /// Records a failed delivery: retry after a backoff, or dead after `max_attempts`.
    async fn fail(&self, job: &Reserved, error: &str) -> Result<FailOutcome, QueueError>;

    /// Records a delivery that failed for good (retrying cannot help, e.g. an SMTP 5xx reply):
    /// the job goes to the dead list at once with `error` as its reason, whatever its attempt
    /// count. [`FailOutcome::Dead`], or [`FailOutcome::NotHeld`] when the worker no longer held
    /// it.
    async fn bury(&self, job: &Reserved, error: &str) -> Result<FailOutcome, QueueError>;

    /// Gives a job back unprocessed (e.g. on shutdown): it goes to the front of the ready queue
    /// and no failure is counted. `false` when the worker no longer held it.
    async fn release(&self, job: &Reserved) -> Result<bool, QueueError>;

    /// The jobs `worker_id` holds in `queue`, oldest reservation first, each as it would be
    /// handed out (so it can be `release`d or `ack`ed). For a worker to find jobs it reserved
    /// without ever receiving them: a `reserve` whose reply was lost (connection reset, client
    /// time-out) leaves the job with a worker that is alive, so the reaper will not return it.
    /// Held entries that cannot be opened are moved to the dead list with the reason (as in
    /// `reserve`) and left out, so no entry makes this fail. Backends that cannot tell return
    /// nothing.
    async fn held(&self, _queue: &str, _worker_id: &str) -> Result<Vec<Reserved>, QueueError> {
        Ok(Vec::new())
    }

    /// Marks `worker_id` alive for `ttl`.
    async fn heartbeat(&self, worker_id: &str, ttl: Duration) -> Result<(), QueueError>;

    /// Drops `worker_id`'s heartbeat at once (clean shutdown), so the next `reap` returns
    /// anything it still holds.
    async fn retire(&self, worker_id: &str) -> Result<(), QueueError>;

    /// Returns the jobs held by workers whose heartbeat expired to the front of their ready
    /// queues, in reservation order. Safe to run concurrently. Returns how many jobs moved.
    async fn reap(&self) -> Result<u64, QueueError>;

    /// Moves the delayed jobs of `queue` whose retry time has come to the back of the ready
    /// queue. Returns how many moved.
    async fn promote_due(&self, queue: &str) -> Result<u64, QueueError>;

    /// The dead list of `queue`, most recent first.
    async fn dead(&self, queue: &str) -> Result<Vec<DeadJob>, QueueError>;

    /// Moves dead job `id` back to the ready queue with its attempt count reset. `false` when
    /// there is no such dead job; an error when the job is unverified (forged jobs are never
    /// re-signed).
    async fn requeue_dead(&self, queue: &str, id: &str) -> Result<bool, QueueError>;

    /// Empties the dead list of `queue`, releasing the ids. Returns how many entries went.
    async fn purge_dead(&self, queue: &str) -> Result<u64, QueueError>;

    /// Sets the marker `name` for `ttl` unless it is already set: `true` when this call set
    /// it. Markers live with the queue (Redis `SET NX PX`, a table of the SQLite database), so
    /// every worker of a deployment sees them, on whatever machine it runs; handlers use them
    /// to remember that an external side effect (an e-mail) already happened.
    async fn set_marker(&self, name: &str, ttl: Duration) -> Result<bool, QueueError>;

    /// Whether the marker `name` is set (and not expired).
    async fn has_marker(&self, name: &str) -> Result<bool, QueueError>;

    /// Job counts of `queue`.
    async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError>;

    /// Checks that the backing store answers (readiness probes).
    async fn ping(&self) -> Result<(), QueueError>;
}

/// Checks a queue or worker name (they become parts of Redis keys).
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), QueueError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(QueueError::InvalidName {
            what,
            name: name.chars().take(64).collect(),
        })
    }
}

/// Checks a marker name: 1–200 characters of `[A-Za-z0-9_.:-]`.
pub(crate) fn check_marker(name: &str) -> Result<(), QueueError> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    if valid {
        Ok(())
    } else {
        Err(QueueError::InvalidName {
            what: "marker",
            name: name.chars().take(64).collect(),
        })
    }
}

/// Dead-list reason for a job that failed for good at its first try (see `bury`).
pub(crate) fn buried_reason(error: &str) -> String {
    format!("failed permanently: {error}")
}

/// Dead-list reason for a job that exhausted its attempts.
pub(crate) fn exhausted_reason(max_attempts: u32, error: &str) -> String {
    format!("failed {max_attempts} times; last error: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let config = QueueConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..QueueConfig::default()
        };
        for _ in 0..50 {
            let first = config.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = config.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = config.backoff(40);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("queue", "transcribe").is_ok());
        assert!(check_name("worker", "host-1.a_b").is_ok());
        for bad in ["", "_x", "a:b", "a b", &"x".repeat(65)] {
            assert!(check_name("queue", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_is_validated() {
        assert!(QueueConfig::default().validate().is_ok());
        let zero = QueueConfig {
            max_attempts: 0,
            ..QueueConfig::default()
        };
        assert!(zero.validate().is_err());
    }
}
