//! The worker loop shared by the transcriber and the notifier: N job slots reserving from one
//! queue, each job decoded into the [`JobHandler`]'s job type before it runs, a heartbeat task,
//! a maintenance task (`reap` + `promote_due` + queue-depth gauge + the audit of this worker's
//! own reservations) and graceful shutdown.
//!
//! Own reservations: the reaper only returns the jobs of workers that stopped heartbeating, so
//! a job in this (living) worker's processing area that no slot works on would otherwise stay
//! there until the process exits. That happens when a process restarts with the same
//! `worker_id` (its predecessor's jobs: released at start) and when a `reserve` moved a job but
//! its reply never arrived (released by the maintenance loop once such a job has been seen
//! unworked for `stranded_after`).
//!
//! Deadline: every job runs under `job_timeout` (`JOB_TIMEOUT_SECS`, per worker loop and so per
//! queue). A handler still running then is cancelled (its future dropped, which kills a
//! command engine's child and closes its connections) and the job is failed as
//! [`JobError::Transient`], so it is retried with back-off like any failure; the slot takes
//! the next job at once, and the other slots never wait for it. `on_dead` runs under the same
//! deadline.
//!
//! Shutdown: when the shutdown future completes the slots stop reserving; jobs in flight may
//! finish for up to `shutdown_grace`, after which they are cancelled and `release`d (returned
//! to the front of the queue without counting a failure). Then the worker id is `retire`d and
//! one `reap` returns anything a cancelled `reserve` may have left behind.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use job_queue::{Envelope, FailOutcome, Job, QueueError, ReliableQueue, Reserved};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::telemetry;

/// How often a worker's maintenance loop runs (`reap`, `promote_due`, the queue-depth gauge and
/// the audit of its own jobs): each pass starts this long after the previous one ended. With
/// the heartbeat TTL it bounds the recovery time of a dead worker's jobs (README, Fault
/// tolerance: "the maintenance loop of every running worker (every 2 s)").
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(2);

/// How the error of a job cancelled at its deadline begins.
pub const JOB_TIMED_OUT: &str = "job timed out";

/// How a worker loop runs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The queue to consume.
    pub queue: String,
    /// Unique per process and role; a queue name (`[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`).
    pub worker_id: String,
    /// Jobs processed at once (≥ 1).
    pub concurrency: usize,
    /// Heartbeat lifetime; the heartbeat is renewed every third of it
    /// ([`heartbeat_interval`](Self::heartbeat_interval)).
    pub heartbeat_ttl: Duration,
    /// How long in-flight jobs may run on after shutdown is requested.
    pub shutdown_grace: Duration,
    /// Deadline of one job (see the module docs).
    pub job_timeout: Duration,
    /// How often `reap`, `promote_due` and the depth gauge run.
    pub maintenance_interval: Duration,
    /// Longest single `reserve` wait.
    pub reserve_wait: Duration,
    /// A job this worker holds but no slot works on is released once it has been seen so for
    /// this long (see the module docs). Must exceed `reserve_wait` plus the queue's reply
    /// margin (5 s on Redis), so a reply still on its way is never mistaken for a lost one.
    pub stranded_after: Duration,
}

impl RunConfig {
    /// Defaults for `role` (e.g. `transcriber`) consuming `queue`, with a fresh worker id.
    pub fn new(role: &str, queue: &str) -> Self {
        RunConfig {
            queue: queue.to_owned(),
            worker_id: new_worker_id(role),
            concurrency: 1,
            heartbeat_ttl: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            job_timeout: Duration::from_secs(600),
            maintenance_interval: MAINTENANCE_INTERVAL,
            reserve_wait: Duration::from_secs(5),
            stranded_after: Duration::from_secs(30),
        }
    }

    /// How often the heartbeat is renewed: every third of `heartbeat_ttl` (README, Fault
    /// tolerance: "renews a heartbeat key every third of `HEARTBEAT_TTL_SECS`"), so two renewals
    /// can be late or lost before the key expires.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_ttl / 3
    }

    fn validate(&self) -> Result<(), RunError> {
        if self.concurrency == 0 {
            return Err(RunError::Config("concurrency must be at least 1".into()));
        }
        if self.heartbeat_ttl < Duration::from_secs(1) {
            return Err(RunError::Config(
                "heartbeat TTL must be at least 1 second".into(),
            ));
        }
        if self.job_timeout.is_zero() {
            return Err(RunError::Config("job timeout must be positive".into()));
        }
        if self.maintenance_interval.is_zero() {
            return Err(RunError::Config(
                "maintenance interval must be positive".into(),
            ));
        }
        if self.stranded_after <= self.reserve_wait {
            return Err(RunError::Config(
                "stranded_after must exceed reserve_wait".into(),
            ));
        }
        Ok(())
    }
}

/// `<role>-<pid>-<random>`: unique enough that two processes never share an id.
pub fn new_worker_id(role: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let short = random.get(..8).unwrap_or(&random);
    format!("{role}-{}-{short}", std::process::id())
}

/// Why a job handler did not complete a job. Either way the job is `fail`ed: retried with
/// backoff until the queue's `max_attempts`, then moved to the dead list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Worth retrying: the network, a dependency or a timeout.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (bad payload, unknown transcription, an SMTP 5xx reply): the job
    /// goes to the dead list at once ([`ReliableQueue::bury`]), without further retries.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Handles the jobs of one type, [`Self::Job`]. Handlers must be idempotent by job id: delivery
/// is at least once.
///
/// The worker loop hands a handler only jobs of its type: a job of another kind, or whose
/// payload does not parse as the type, fails permanently (dead at once) before
/// [`perform`](Self::perform) is called.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// The job type: its [`Job::JOB_NAME`] is the only kind this handler accepts.
    type Job: Job;

    /// Processes one job, decoded from `envelope` (which gives its id and delivery count).
    /// `Ok` acks it.
    async fn perform(&self, job: Self::Job, envelope: &Envelope) -> Result<(), JobError>;

    /// Called once a job went to the dead list after `error` (best effort compensation, e.g.
    /// telling the user); not called for a job whose payload does not parse. The default does
    /// nothing.
    async fn on_dead(&self, _job: Self::Job, _envelope: &Envelope, _error: &JobError) {}

    /// Decodes `envelope` into [`Self::Job`] and [`perform`](Self::perform)s it: what the worker
    /// loop does with each job it reserves (minus its deadline and the queue's bookkeeping).
    /// Another kind or a payload that does not parse is a [`JobError::Permanent`].
    async fn handle(&self, envelope: &Envelope) -> Result<(), JobError> {
        let job = envelope
            .decode::<Self::Job>()
            .map_err(|e| JobError::Permanent(e.to_string()))?;
        self.perform(job, envelope).await
    }
}

/// A [`JobHandler`] with its job type erased, so one worker loop runs any of them.
#[async_trait]
trait ErasedHandler: Send + Sync + 'static {
    /// The job kind the handler accepts.
    fn job_name(&self) -> &'static str;

    /// [`JobHandler::handle`].
    async fn handle_envelope(&self, envelope: &Envelope) -> Result<(), JobError>;

    /// [`JobHandler::on_dead`] for a job whose payload parses.
    async fn dead_envelope(&self, envelope: &Envelope, error: &JobError);
}

#[async_trait]
impl<H: JobHandler> ErasedHandler for H {
    fn job_name(&self) -> &'static str {
        <H::Job as Job>::JOB_NAME
    }

    async fn handle_envelope(&self, envelope: &Envelope) -> Result<(), JobError> {
        JobHandler::handle(self, envelope).await
    }

    async fn dead_envelope(&self, envelope: &Envelope, error: &JobError) {
        if let Ok(job) = envelope.decode::<H::Job>() {
            self.on_dead(job, envelope, error).await;
        }
    }
}

/// Why a worker loop could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid worker configuration: {0}")]
    Config(String),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
}

/// What a worker loop did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Jobs handled and acked.
    pub succeeded: u64,
    /// Deliveries that failed (retried or dead).
    pub failed: u64,
    /// Jobs returned to the queue unprocessed at shutdown.
    pub released: u64,
}

/// Ids of the jobs the slots are working on.
type InFlight = Arc<Mutex<HashSet<String>>>;

fn in_flight_set(in_flight: &InFlight) -> std::sync::MutexGuard<'_, HashSet<String>> {
    in_flight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Marks a job as worked on until dropped.
struct Tracked<'a> {
    in_flight: &'a InFlight,
    id: String,
}

impl<'a> Tracked<'a> {
    fn new(in_flight: &'a InFlight, job: &Reserved) -> Self {
        let id = job.envelope.id.to_string();
        in_flight_set(in_flight).insert(id.clone());
        Tracked { in_flight, id }
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        in_flight_set(self.in_flight).remove(&self.id);
    }
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    released: AtomicU64,
}

/// One queue, one handler, N slots.
pub struct WorkerLoop {
    queue: Arc<dyn ReliableQueue>,
    handler: Arc<dyn ErasedHandler>,
    config: RunConfig,
}

impl WorkerLoop {
    /// A loop feeding `handler` the jobs of `config.queue` (see the module docs).
    pub fn new<H: JobHandler>(
        queue: Arc<dyn ReliableQueue>,
        handler: Arc<H>,
        config: RunConfig,
    ) -> Self {
        WorkerLoop {
            queue,
            handler,
            config,
        }
    }

    /// Runs until `shutdown` completes, then stops as described in the module docs.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunSummary, RunError> {
        self.config.validate()?;
        let config = Arc::new(self.config);
        let queue = self.queue;
        queue
            .heartbeat(&config.worker_id, config.heartbeat_ttl)
            .await?;
        // Nothing runs under this id yet: whatever it holds was left by a previous process.
        let leftovers = queue.held(&config.queue, &config.worker_id).await?;
        for job in &leftovers {
            queue.release(job).await?;
        }
        if !leftovers.is_empty() {
            tracing::warn!(
                worker_id = %config.worker_id,
                jobs = leftovers.len(),
                "returned jobs left by a previous process with this worker id"
            );
        }
        tracing::info!(
            queue = %config.queue,
            worker_id = %config.worker_id,
            concurrency = config.concurrency,
            "worker started"
        );

        let (stop_tx, stop_rx) = watch::channel(false);
        let (abort_tx, abort_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let in_flight = InFlight::default();
        let background = [
            tokio::spawn(heartbeat_loop(
                queue.clone(),
                config.clone(),
                done_rx.clone(),
            )),
            tokio::spawn(maintenance_loop(
                queue.clone(),
                config.clone(),
                in_flight.clone(),
                done_rx,
            )),
        ];
        let counters = Arc::new(Counters::default());
        let mut slots = JoinSet::new();
        for _ in 0..config.concurrency {
            let slot = Slot {
                queue: queue.clone(),
                handler: self.handler.clone(),
                config: config.clone(),
                counters: counters.clone(),
                in_flight: in_flight.clone(),
            };
            slots.spawn(slot_loop(slot, stop_rx.clone(), abort_rx.clone()));
        }

        shutdown.await;
        tracing::info!(worker_id = %config.worker_id, grace = ?config.shutdown_grace, "stopping: no new jobs");
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(config.shutdown_grace, async {
            while slots.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown grace period over: returning in-flight jobs to the queue");
            let _ = abort_tx.send(true);
            while slots.join_next().await.is_some() {}
        }
        let _ = done_tx.send(true);
        for task in background {
            let _ = task.await;
        }
        if let Err(err) = queue.retire(&config.worker_id).await {
            tracing::warn!(error = %err, "could not retire the worker id; its jobs return after the heartbeat expires");
        } else if let Err(err) = queue.reap().await {
            tracing::warn!(error = %err, "reap after retire failed");
        }
        let summary = RunSummary {
            succeeded: counters.succeeded.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            released: counters.released.load(Ordering::Relaxed),
        };
        tracing::info!(worker_id = %config.worker_id, ?summary, "worker stopped");
        Ok(summary)
    }
}

struct Slot {
    queue: Arc<dyn ReliableQueue>,
    handler: Arc<dyn ErasedHandler>,
    config: Arc<RunConfig>,
    counters: Arc<Counters>,
    in_flight: InFlight,
}

async fn slot_loop(slot: Slot, mut stop: watch::Receiver<bool>, mut abort: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        // A reserve cancelled by shutdown may still have moved a job to this worker; the reap
        // after `retire` returns it.
        let reserved = tokio::select! {
            reserved = slot.queue.reserve(&slot.config.queue, &slot.config.worker_id, slot.config.reserve_wait) => reserved,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let job = match reserved {
            Ok(Some(job)) => job,
            Ok(None) => continue,
            Err(err) => {
                tracing::warn!(error = %err, queue = %slot.config.queue, "reserve failed; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
                continue;
            }
        };
        let _tracked = Tracked::new(&slot.in_flight, &job);
        if *stop.borrow() {
            release(&slot, &job).await;
            return;
        }
        let aborted = tokio::select! {
            () = process(&slot, &job) => false,
            _ = abort.wait_for(|abort| *abort) => true,
        };
        if aborted {
            release(&slot, &job).await;
            return;
        }
    }
}

async fn release(slot: &Slot, job: &Reserved) {
    match slot.queue.release(job).await {
        Ok(true) => {
            slot.counters.released.fetch_add(1, Ordering::Relaxed);
            tracing::info!(job_id = %job.envelope.id, "job returned to the queue");
        }
        Ok(false) => {}
        Err(err) => {
            tracing::warn!(job_id = %job.envelope.id, error = %err, "release failed; the job returns when the worker id is reaped");
        }
    }
}

/// Handles one reserved job and records the outcome with the queue.
async fn process(slot: &Slot, job: &Reserved) {
    let envelope = &job.envelope;
    let queue_name = slot.config.queue.as_str();
    let kind = envelope.kind.as_str();
    let span = tracing::info_span!("job", job_id = %envelope.id, kind, attempt = envelope.attempt);
    let started = Instant::now();
    let deadline = slot.config.job_timeout;
    let result = if kind == slot.handler.job_name() {
        let handled = slot
            .handler
            .handle_envelope(envelope)
            .instrument(span.clone());
        match tokio::time::timeout(deadline, handled).await {
            Ok(result) => result,
            Err(_) => {
                telemetry::count(telemetry::JOBS_TIMED_OUT, queue_name, kind);
                Err(JobError::Transient(format!(
                    "{JOB_TIMED_OUT} after {} s (JOB_TIMEOUT_SECS)",
                    deadline.as_secs_f64()
                )))
            }
        }
    } else {
        Err(JobError::Permanent(format!(
            "unexpected job kind `{kind}` on queue `{queue_name}`"
        )))
    };
    match result {
        Ok(()) => match with_retries(|| slot.queue.ack(job)).await {
            Ok(true) => {
                slot.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                telemetry::count(telemetry::JOBS_SUCCEEDED, queue_name, kind);
                tracing::info!(parent: &span, "job done");
            }
            Ok(false) => {
                tracing::warn!(parent: &span, "job done, but it was reaped before the ack; it may run again");
            }
            Err(err) => {
                tracing::error!(parent: &span, error = %err, "job done, but the ack failed; it will run again");
            }
        },
        Err(error) => {
            slot.counters.failed.fetch_add(1, Ordering::Relaxed);
            telemetry::count(telemetry::JOBS_FAILED, queue_name, kind);
            let reason = error.to_string();
            let permanent = matches!(error, JobError::Permanent(_));
            let outcome = with_retries(|| async {
                if permanent {
                    slot.queue.bury(job, &reason).await
                } else {
                    slot.queue.fail(job, &reason).await
                }
            })
            .await;
            match outcome {
                Ok(FailOutcome::Retrying { attempt, delay }) => {
                    telemetry::count(telemetry::JOBS_RETRIED, queue_name, kind);
                    tracing::warn!(parent: &span, error = %reason, attempt, retry_in = ?delay, "job failed; will retry");
                }
                Ok(FailOutcome::Dead) => {
                    telemetry::count(telemetry::JOBS_DEAD, queue_name, kind);
                    tracing::error!(parent: &span, error = %reason, "job failed for the last time: moved to the dead list");
                    let compensation = slot
                        .handler
                        .dead_envelope(envelope, &error)
                        .instrument(span.clone());
                    if tokio::time::timeout(deadline, compensation).await.is_err() {
                        tracing::error!(parent: &span, "on_dead compensation timed out");
                    }
                }
                Ok(FailOutcome::NotHeld) => {
                    tracing::warn!(parent: &span, error = %reason, "job failed, but it had been reaped already");
                }
                Err(err) => {
                    tracing::error!(parent: &span, error = %err, job_error = %reason, "job failed and the failure could not be recorded; it returns when the worker id is reaped");
                }
            }
        }
    }
    telemetry::processing_time(queue_name, kind, started.elapsed().as_secs_f64());
}

/// Runs a queue operation up to three times (short backoff) so a blip does not strand a job.
async fn with_retries<T, F, Fut>(mut operation: F) -> Result<T, QueueError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, QueueError>>,
{
    let mut delay = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        tries += 1;
        match operation().await {
            Ok(value) => return Ok(value),
            Err(err) if tries >= 3 => return Err(err),
            Err(err) => {
                tracing::debug!(error = %err, "queue operation failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

async fn heartbeat_loop(
    queue: Arc<dyn ReliableQueue>,
    config: Arc<RunConfig>,
    mut done: watch::Receiver<bool>,
) {
    let period = config.heartbeat_interval();
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = done.wait_for(|done| *done) => return,
        }
        if let Err(err) = queue
            .heartbeat(&config.worker_id, config.heartbeat_ttl)
            .await
        {
            tracing::warn!(error = %err, "heartbeat failed");
        }
    }
}

async fn maintenance_loop(
    queue: Arc<dyn ReliableQueue>,
    config: Arc<RunConfig>,
    in_flight: InFlight,
    mut done: watch::Receiver<bool>,
) {
    let mut unworked = HashMap::new();
    loop {
        match queue.reap().await {
            Ok(0) => {}
            Ok(moved) => tracing::info!(moved, "reaped jobs of dead workers"),
            Err(err) => tracing::warn!(error = %err, "reap failed"),
        }
        match queue.promote_due(&config.queue).await {
            Ok(0) => {}
            Ok(moved) => tracing::debug!(moved, "promoted due retries"),
            Err(err) => tracing::warn!(error = %err, "promote_due failed"),
        }
        if let Ok(stats) = queue.stats(&config.queue).await {
            telemetry::queue_depth(&config.queue, &stats);
        }
        audit_own_jobs(queue.as_ref(), &config, &in_flight, &mut unworked).await;
        tokio::select! {
            () = tokio::time::sleep(config.maintenance_interval) => {}
            _ = done.wait_for(|done| *done) => return,
        }
    }
}

/// Releases the jobs this worker has held, unworked, for `stranded_after` (see the module
/// docs). `unworked` maps such job ids to when they were first seen so.
async fn audit_own_jobs(
    queue: &dyn ReliableQueue,
    config: &RunConfig,
    in_flight: &InFlight,
    unworked: &mut HashMap<String, Instant>,
) {
    let held = match queue.held(&config.queue, &config.worker_id).await {
        Ok(held) => held,
        Err(err) => {
            tracing::warn!(error = %err, "cannot list this worker's jobs");
            return;
        }
    };
    let now = Instant::now();
    let mut still_unworked = HashMap::new();
    for job in held {
        let id = job.envelope.id.to_string();
        if in_flight_set(in_flight).contains(&id) {
            continue;
        }
        let since = unworked.get(&id).copied().unwrap_or(now);
        if now.duration_since(since) < config.stranded_after {
            still_unworked.insert(id, since);
            continue;
        }
        match queue.release(&job).await {
            Ok(true) => tracing::warn!(
                job_id = %id,
                "returned a job this worker held but never worked on (a lost reserve reply?)"
            ),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(job_id = %id, error = %err, "cannot return an unworked job");
                still_unworked.insert(id, since);
            }
        }
    }
    *unworked = still_unworked;
}
