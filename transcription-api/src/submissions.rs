//! Accepting transcriptions and keeping their jobs queued: the record and the job are tied
//! together by an outbox, so neither can exist for long without the other.
//!
//! A submission writes the record, its outbox entry and its idempotency key in one transaction,
//! then enqueues the job (job id = transcription id) and drops the outbox entry.
//! - The queue is unreachable: the transaction is undone ([`TranscriptionStore::withdraw`]) and
//!   the client gets 503 — nothing half-written remains.
//! - The process dies between the commit and the enqueue (or before dropping the entry): the
//!   entry stays, and the [`OutboxRelay`] of any instance enqueues it once it is older than the
//!   grace period. Enqueueing an id the queue still holds is a no-op (the queue suppresses
//!   duplicates of pending ids), and a record that moved past `queued` is not enqueued again,
//!   so the relay cannot make a job run twice.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use job_queue::ReliableQueue;
use job_queue::jobs::{TRANSCRIBE_QUEUE, TranscribeJob};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{
    IdempotencyKey, Inserted, Notification, NotificationOutcome, Page, Report, ReportOutcome,
    Status, StoreError, Transcription, TranscriptionStore,
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

/// What a submission produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// A new transcription, queued.
    Created(Uuid),
    /// The same request was made before with this idempotency key: its transcription.
    Replayed(Uuid),
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the idempotency key was used with a different request")]
    KeyReused,
    #[error("the job queue is unavailable: {0}")]
    QueueUnavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tuning of submissions and of the relay.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Longest wait for the queue during a request before answering 503.
    pub enqueue_timeout: Duration,
    /// How old an outbox entry must be before the relay takes it (longer than a request).
    pub grace: Duration,
    /// How often the relay looks.
    pub relay_interval: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            enqueue_timeout: Duration::from_secs(3),
            grace: Duration::from_secs(30),
            relay_interval: Duration::from_secs(5),
        }
    }
}

/// The transcription use cases, on a store and a queue.
pub struct Transcriptions {
    store: Arc<dyn TranscriptionStore>,
    queue: Arc<dyn ReliableQueue>,
    config: OutboxConfig,
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Hex SHA-256 of the fields that define a submission.
fn request_hash(submission: &Submission) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(submission.email.as_bytes());
    context.update(&[0]);
    context.update(submission.audio_url.as_bytes());
    context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        }
    }

    pub fn store(&self) -> &Arc<dyn TranscriptionStore> {
        &self.store
    }

    pub fn queue(&self) -> &Arc<dyn ReliableQueue> {
        &self.queue
    }

    /// Records and queues a transcription (see the module docs for the guarantees).
    pub async fn submit(
        &self,
        caller: &Caller,
        submission: Submission,
        idempotency_key: Option<String>,
    ) -> Result<Submitted, SubmitError> {
        let now = OffsetDateTime::now_utc();
        let key = idempotency_key.map(|key| IdempotencyKey {
            owner: caller.sub.clone(),
            key,
            request_hash: request_hash(&submission),
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
            created_at: now,
            updated_at: now,
        };
        let due = unix_ms(now) + millis(self.config.grace);
        match self.store.insert(&transcription, key.as_ref(), due).await? {
            Inserted::Replayed {
                transcription_id,
                same_request: true,
            } => return Ok(Submitted::Replayed(transcription_id)),
            Inserted::Replayed { .. } => return Err(SubmitError::KeyReused),
            Inserted::Created => {}
        }
        let id = transcription.id;
        let job = TranscribeJob {
            transcription_id: id,
            audio_url: transcription.audio_url,
            email: transcription.email,
        };
        match self.enqueue(&job).await {
            Ok(()) => {
                if let Err(e) = self.store.outbox_done(id).await {
                    // The relay will find the entry and see the job is pending: harmless.
                    tracing::warn!(%id, error = %e, "could not clear the outbox entry");
                }
                metrics::counter!("transcriptions_submitted_total").increment(1);
                Ok(Submitted::Created(id))
            }
            Err(reason) => match self.store.withdraw(id).await {
                Ok(true) => Err(SubmitError::QueueUnavailable(reason)),
                // The relay took the entry meanwhile: the job is (being) queued after all.
                Ok(false) => Ok(Submitted::Created(id)),
                Err(e) => {
                    // The record and its outbox entry stay: the relay queues the job later, so
                    // the request did succeed.
                    tracing::warn!(%id, error = %e, "could not withdraw the record; the outbox relay will queue it");
                    Ok(Submitted::Created(id))
                }
            },
        }
    }

    async fn enqueue(&self, job: &TranscribeJob) -> Result<(), String> {
        let job = job.to_job().map_err(|e| e.to_string())?;
        match tokio::time::timeout(
            self.config.enqueue_timeout,
            self.queue.enqueue_job(TRANSCRIBE_QUEUE, job),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
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

    pub async fn list(
        &self,
        owner: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        self.store.list(owner, before, limit).await
    }

    /// Applies a worker's report.
    pub async fn report(&self, id: Uuid, report: &Report) -> Result<ReportOutcome, StoreError> {
        let outcome = self
            .store
            .report(id, report, OffsetDateTime::now_utc())
            .await?;
        if outcome == ReportOutcome::Applied {
            metrics::counter!("transcriptions_reported_total", "status" => report.status().as_str())
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

    /// One pass of the relay: queues the jobs of outbox entries older than the grace period.
    /// Returns how many entries were settled.
    pub async fn relay_once(&self) -> Result<usize, StoreError> {
        let now = unix_ms(OffsetDateTime::now_utc());
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
            match self.enqueue(&job).await {
                Ok(()) => {
                    self.store.outbox_done(id).await?;
                    metrics::counter!("outbox_relayed_total").increment(1);
                    tracing::info!(%id, "outbox relay queued a transcription job");
                    settled += 1;
                }
                // The lease expires and a later pass tries again.
                Err(reason) => tracing::warn!(%id, %reason, "outbox relay could not queue a job"),
            }
        }
        let cutoff = now - millis(IDEMPOTENCY_KEY_TTL);
        self.store.purge_idempotency_keys(cutoff).await?;
        if let Ok(pending) = self.store.outbox_len().await {
            metrics::gauge!("transcription_outbox_pending").set(pending as f64);
        }
        Ok(settled)
    }

    /// Runs [`relay_once`](Self::relay_once) every `relay_interval` until `shutdown` resolves.
    pub async fn run_relay(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let period = self.config.relay_interval;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticks.tick() => {
                    if let Err(e) = self.relay_once().await {
                        tracing::warn!(error = %e, "outbox relay pass failed");
                    }
                }
            }
        }
    }
}
