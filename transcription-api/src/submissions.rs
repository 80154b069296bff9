//! Accepting transcriptions and keeping their jobs queued: the record and the job are tied
//! together by a transactional outbox, the only path from a record to the queue (see
//! "The record and the job stay together" in the README).
//!
//! A submission writes the record, its outbox entry and its idempotency key in one transaction.
//! From that commit on the request has succeeded (202), whatever the queue does: the request
//! then tries once to enqueue the job (job id = transcription id, bounded by
//! `enqueue_timeout`) and drops the outbox entry when that worked.
//! - The queue is down or slow: the entry is made due at once and the [`OutboxRelay`] is woken;
//!   it enqueues immediately and again on every `relay_interval` until the queue answers.
//!   Redis down means "accepted, delayed", never "lost".
//! - An enqueue that timed out may still happen later (a paused Redis runs it when resumed):
//!   enqueueing an id the queue still holds is a no-op (the queue suppresses duplicates of
//!   pending ids), so the late command and the relay's enqueue give one job.
//! - The process dies between commit and enqueue: the entry stays and the relay of any
//!   instance enqueues it once it is due.
//! - The queue lost its data (Redis without persistence): a record still `queued` after
//!   `requeue_stale_after` goes back into the outbox and the relay enqueues it again.
//!
//! A replay of an `Idempotency-Key` whose request is still in flight is refused with
//! [`SubmitError::InFlight`] (409 with `Retry-After`, IETF Idempotency-Key draft section 2.6):
//! only a request's final outcome is replayed.
//!
//! A transcription that failed for good can be retried by its owner
//! ([`Transcriptions::retry`]): the record goes back to `queued` as its next attempt, in the same
//! transaction as a fresh outbox entry, and from there on it is handed over like a submission,
//! as a fresh job ([`contracts::jobs::attempt_key`]).
//!
//! [`OutboxRelay`]: Transcriptions::run_relay

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use contracts::jobs::{FIRST_ATTEMPT, TranscribeJob};
use contracts::report::ResultReport;
use job_queue::{Job, ReliableQueue};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{
    EarlierRequest, IdempotencyKey, Inserted, Notification, NotificationOutcome, Page,
    ReportOutcome, Retried, Status, StoreError, Transcription, TranscriptionStore,
};
use crate::validate::Submission;

/// How an idempotency key is remembered.
pub const IDEMPOTENCY_KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Who submits: from the verified access token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub sub: String,
    pub client_id: String,
}

/// What a submission (or a retry) produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// A new transcription (or a new attempt of one), queued.
    Created(Uuid),
    /// The same request was made before with this idempotency key: its transcription.
    Replayed(Uuid),
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the idempotency key was used with a different request")]
    KeyReused,
    /// The request that holds the key has not answered yet: retry after this many seconds.
    #[error("a request with this idempotency key is still in flight")]
    InFlight { retry_after_secs: u64 },
    /// A retry of a transcription that has not failed.
    #[error("only a failed transcription can be retried; this one is {0}")]
    NotFailed(Status),
    /// A retry of another owner's or an unknown transcription (the same answer).
    #[error("no such transcription")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tuning of submissions and of the relay.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Longest wait for the queue during a request (it answers 202 either way) or per job in
    /// a relay pass.
    pub enqueue_timeout: Duration,
    /// How long the relay leaves a fresh or claimed outbox entry alone (the request, or another
    /// relay, is enqueueing it). Only efficiency depends on it: a duplicate enqueue is a no-op.
    pub grace: Duration,
    /// How often the relay looks.
    pub relay_interval: Duration,
    /// A record `queued` this long since it was last handed to the queue is handed over again
    /// (a no-op when the queue still holds its job; `REQUEUE_STALE_AFTER`).
    pub requeue_stale_after: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            enqueue_timeout: Duration::from_secs(3),
            grace: Duration::from_secs(5),
            relay_interval: Duration::from_secs(5),
            requeue_stale_after: Duration::from_secs(600),
        }
    }
}

/// The transcription use cases, on a store and a queue.
pub struct Transcriptions {
    store: Arc<dyn TranscriptionStore>,
    queue: Arc<dyn ReliableQueue>,
    config: OutboxConfig,
    /// Wakes the relay when a request could not queue its job.
    relay_wake: tokio::sync::Notify,
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Hex SHA-256 of the fields that define a request: a submission's e-mail and URL, or the id
/// a retry names (prefixed, so it cannot equal a submission's).
fn request_hash(parts: &[&[u8]]) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            context.update(&[0]);
        }
        context.update(part);
    }
    context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The answer to a request whose idempotency key `earlier` holds: its result once it has
/// answered, 409 while it is in flight, 422 when it was another request.
fn replay(earlier: EarlierRequest, now: OffsetDateTime) -> Result<Submitted, SubmitError> {
    if !earlier.same_request {
        return Err(SubmitError::KeyReused);
    }
    if earlier.in_flight_until_ms > unix_ms(now) {
        let wait_ms = u64::try_from(earlier.in_flight_until_ms - unix_ms(now)).unwrap_or(1);
        return Err(SubmitError::InFlight {
            retry_after_secs: wait_ms.div_ceil(1000).max(1),
        });
    }
    Ok(Submitted::Replayed(earlier.transcription_id))
}

impl Transcriptions {
    pub fn new(
        store: Arc<dyn TranscriptionStore>,
        queue: Arc<dyn ReliableQueue>,
        config: OutboxConfig,
    ) -> Self {
        Transcriptions {
            store,
            queue,
            config,
            relay_wake: tokio::sync::Notify::new(),
        }
    }

    pub fn store(&self) -> &Arc<dyn TranscriptionStore> {
        &self.store
    }

    pub fn queue(&self) -> &Arc<dyn ReliableQueue> {
        &self.queue
    }

    /// `caller`'s idempotency key for a request with this hash: in flight while the request
    /// may still be enqueueing, plus a margin for the commit.
    fn idempotency_key(
        &self,
        caller: &Caller,
        key: String,
        request_hash: String,
        now: OffsetDateTime,
    ) -> IdempotencyKey {
        IdempotencyKey {
            owner: caller.sub.clone(),
            key,
            request_hash,
            in_flight_until_ms: unix_ms(now)
                + millis(self.config.enqueue_timeout)
                + millis(Duration::from_secs(1)),
        }
    }

    /// Records and queues a transcription (see the module docs for the guarantees).
    pub async fn submit(
        &self,
        caller: &Caller,
        submission: Submission,
        idempotency_key: Option<String>,
    ) -> Result<Submitted, SubmitError> {
        let now = OffsetDateTime::now_utc();
        let key = idempotency_key.map(|key| {
            let hash =
                request_hash(&[submission.email.as_bytes(), submission.audio_url.as_bytes()]);
            self.idempotency_key(caller, key, hash, now)
        });
        let transcription = Transcription {
            id: Uuid::new_v4(),
            owner: caller.sub.clone(),
            client_id: caller.client_id.clone(),
            email: submission.email,
            audio_url: submission.audio_url,
            status: Status::Queued,
            transcript: None,
            error: None,
            notification: Notification::Pending,
            attempt: FIRST_ATTEMPT,
            created_at: now,
            updated_at: now,
        };
        let due = unix_ms(now) + millis(self.config.grace);
        if let Inserted::Replayed(earlier) =
            self.store.insert(&transcription, key.as_ref(), due).await?
        {
            return replay(earlier, now);
        }
        // Committed: the request has succeeded; the queue only decides how soon the job runs.
        metrics::counter!("transcriptions_submitted_total").increment(1);
        let id = transcription.id;
        self.hand_over(transcription, key.as_ref()).await;
        Ok(Submitted::Created(id))
    }

    /// Queues `owner`'s failed transcription `id` again as its next attempt, with a fresh job
    /// (see the module docs). Another owner's id and an unknown one get the same
    /// [`SubmitError::NotFound`]; a record that has not failed [`SubmitError::NotFailed`].
    pub async fn retry(
        &self,
        caller: &Caller,
        id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<Submitted, SubmitError> {
        let now = OffsetDateTime::now_utc();
        let key = idempotency_key.map(|key| {
            let hash = request_hash(&[b"retry", id.as_bytes()]);
            self.idempotency_key(caller, key, hash, now)
        });
        let due = unix_ms(now) + millis(self.config.grace);
        let record = match self
            .store
            .retry(&caller.sub, id, key.as_ref(), now, due)
            .await?
        {
            Retried::Queued(record) => record,
            Retried::Replayed(earlier) => return replay(earlier, now),
            Retried::NotFailed(status) => return Err(SubmitError::NotFailed(status)),
            Retried::NotFound => return Err(SubmitError::NotFound),
        };
        metrics::counter!("transcriptions_retried_total").increment(1);
        tracing::info!(%id, attempt = record.attempt, "failed transcription queued again");
        self.hand_over(record, key.as_ref()).await;
        Ok(Submitted::Created(id))
    }

    /// After the commit that wrote `record`'s outbox entry: tries once to queue its job and
    /// drops the entry when the queue took it (else makes it due and wakes the relay), then
    /// settles the idempotency key. Nothing here can undo the request's success.
    async fn hand_over(&self, record: Transcription, key: Option<&IdempotencyKey>) {
        let id = record.id;
        let attempt = record.attempt;
        let job = TranscribeJob {
            transcription_id: id,
            audio_url: record.audio_url,
            email: record.email,
        };
        match self.enqueue(&job, attempt).await {
            Ok(_) => {
                if let Err(e) = self.store.outbox_done(id).await {
                    // The relay will find the entry and enqueue a duplicate: a no-op.
                    tracing::warn!(%id, error = %e, "could not clear the outbox entry");
                }
            }
            Err(reason) => {
                tracing::warn!(%id, %reason, "the queue did not take the job; the outbox relay will");
                metrics::counter!("transcriptions_enqueue_deferred_total").increment(1);
                let now_ms = unix_ms(OffsetDateTime::now_utc());
                if let Err(e) = self.store.outbox_due(id, now_ms).await {
                    tracing::warn!(%id, error = %e, "could not make the outbox entry due");
                }
                self.relay_wake.notify_one();
            }
        }
        if let Some(key) = key
            && let Err(e) = self
                .store
                .settle_idempotency_key(&key.owner, &key.key)
                .await
        {
            // Replays get 409 until the in-flight window lapses, then the result.
            tracing::warn!(%id, error = %e, "could not settle the idempotency key");
        }
    }

    /// Enqueues attempt `attempt` of `job` within `enqueue_timeout`; `Ok(true)` when the queue
    /// already held it.
    async fn enqueue(&self, job: &TranscribeJob, attempt: u32) -> Result<bool, String> {
        let job = job.to_attempt_job(attempt).map_err(|e| e.to_string())?;
        match tokio::time::timeout(
            self.config.enqueue_timeout,
            self.queue.enqueue_job(TranscribeJob::QUEUE, job),
        )
        .await
        {
            Ok(Ok(enqueued)) => Ok(enqueued.duplicate),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {:?}",
                self.config.enqueue_timeout
            )),
        }
    }

    /// `owner`'s transcription `id`; `None` for an unknown id or another owner's.
    pub async fn get(&self, owner: &str, id: Uuid) -> Result<Option<Transcription>, StoreError> {
        Ok(self.store.get(id).await?.filter(|t| t.owner == owner))
    }

    /// A page of `owner`'s transcriptions after `owner`'s transcription `after`; `None` when
    /// `after` is not one of theirs.
    pub async fn list(
        &self,
        owner: &str,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Option<Page>, StoreError> {
        self.store.list(owner, after, limit).await
    }

    /// Applies a worker's report.
    pub async fn report(
        &self,
        id: Uuid,
        report: &ResultReport,
    ) -> Result<ReportOutcome, StoreError> {
        let outcome = self
            .store
            .report(id, report, OffsetDateTime::now_utc())
            .await?;
        if outcome == ReportOutcome::Applied {
            metrics::counter!("transcriptions_reported_total", "status" => Status::from(report).as_str())
                .increment(1);
        }
        Ok(outcome)
    }

    /// Applies the notifier's report on the e-mail of `id`.
    pub async fn report_notification(
        &self,
        id: Uuid,
        notification: &Notification,
    ) -> Result<NotificationOutcome, StoreError> {
        let outcome = self
            .store
            .report_notification(id, notification, OffsetDateTime::now_utc())
            .await?;
        if outcome == NotificationOutcome::Applied {
            metrics::counter!("transcriptions_notified_total", "status" => notification.as_str())
                .increment(1);
        }
        Ok(outcome)
    }

    /// One pass of the relay: puts records `queued` for longer than `requeue_stale_after` back
    /// into the outbox, then queues the jobs of due outbox entries, stopping at the first the
    /// queue does not take (it is down: the next pass tries again). Returns how many entries
    /// were settled.
    pub async fn relay_once(&self) -> Result<usize, StoreError> {
        let now = unix_ms(OffsetDateTime::now_utc());
        let stale = self
            .store
            .requeue_stale(now - millis(self.config.requeue_stale_after), now, 100)
            .await?;
        if stale > 0 {
            tracing::info!(stale, "records queued too long go back to the outbox");
        }
        let lease_until = now + millis(self.config.grace);
        let entries = self.store.claim_outbox(now, lease_until, 100).await?;
        let mut settled = 0;
        for entry in entries {
            let id = entry.transcription_id;
            if entry.status != Status::Queued {
                // A worker already reported on it: it was queued.
                self.store.outbox_done(id).await?;
                settled += 1;
                continue;
            }
            let job = TranscribeJob {
                transcription_id: id,
                audio_url: entry.audio_url,
                email: entry.email,
            };
            match self.enqueue(&job, entry.attempt).await {
                Ok(held) => {
                    self.store.outbox_done(id).await?;
                    settled += 1;
                    if held {
                        tracing::debug!(%id, "the queue already held the job");
                    } else {
                        metrics::counter!("outbox_relayed_total").increment(1);
                        tracing::info!(%id, "outbox relay queued a transcription job");
                    }
                }
                Err(reason) => {
                    // The queue is down: this and the other claimed entries become due again
                    // once their lease expires.
                    tracing::warn!(%id, %reason, "outbox relay could not queue a job");
                    break;
                }
            }
        }
        let cutoff = now - millis(IDEMPOTENCY_KEY_TTL);
        self.store.purge_idempotency_keys(cutoff).await?;
        if let Ok(pending) = self.store.outbox_len().await {
            metrics::gauge!("transcription_outbox_pending").set(pending as f64);
        }
        Ok(settled)
    }

    /// Runs [`relay_once`](Self::relay_once) every `relay_interval`, and at once when a request
    /// could not queue its job, until `shutdown` resolves.
    pub async fn run_relay(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let period = self.config.relay_interval;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.relay_wake.notified() => {}
                _ = ticks.tick() => {}
            }
            if let Err(e) = self.relay_once().await {
                tracing::warn!(error = %e, "outbox relay pass failed");
            }
        }
    }
}
