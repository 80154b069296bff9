//! The worker loop with test handlers on the SQLite queue: graceful shutdown, retries up to
//! the dead list, concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use job_queue::{Envelope, Job, ReliableQueue};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use worker::{JobError, JobHandler, RunConfig, WorkerLoop};

use crate::helpers::{RedisTestQueue, TestQueue, eventually};

const QUEUE: &str = "work";

/// The jobs of these tests: kind `test`, payload `{"n": …}`.
#[derive(Serialize, Deserialize)]
struct TestJob {}

impl Job for TestJob {
    const JOB_NAME: &'static str = "test";
    const QUEUE: &'static str = QUEUE;
}

/// Sleeps `work` per job, counting starts, finishes and dead jobs; fails when `fail` is set.
struct TestHandler {
    work: Duration,
    fail: bool,
    started: AtomicU32,
    finished: AtomicU32,
    dead: AtomicU32,
    first_start: Notify,
}

impl TestHandler {
    fn new(work: Duration, fail: bool) -> Arc<TestHandler> {
        Arc::new(TestHandler {
            work,
            fail,
            started: AtomicU32::new(0),
            finished: AtomicU32::new(0),
            dead: AtomicU32::new(0),
            first_start: Notify::new(),
        })
    }
}

#[async_trait]
impl JobHandler for TestHandler {
    type Job = TestJob;

    async fn perform(&self, _job: TestJob, _envelope: &Envelope) -> Result<(), JobError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.first_start.notify_one();
        tokio::time::sleep(self.work).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            Err(JobError::Transient("engine on fire".into()))
        } else {
            Ok(())
        }
    }

    async fn on_dead(&self, _job: TestJob, _envelope: &Envelope, _error: &JobError) {
        self.dead.fetch_add(1, Ordering::SeqCst);
    }
}

fn run_config(concurrency: usize, grace: Duration) -> RunConfig {
    let mut config = RunConfig::new("test", QUEUE);
    config.concurrency = concurrency;
    config.shutdown_grace = grace;
    config.reserve_wait = Duration::from_millis(100);
    config.maintenance_interval = Duration::from_millis(50);
    config
}

async fn enqueue(queue: &dyn ReliableQueue, n: usize) {
    for i in 0..n {
        queue
            .enqueue(QUEUE, "test", serde_json::json!({ "n": i }))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn shutdown_past_the_grace_period_releases_the_in_flight_job_and_leaves_the_rest() {
    let queue = TestQueue::sqlite().await;
    enqueue(queue.queue.as_ref(), 2).await;
    let handler = TestHandler::new(Duration::from_secs(30), false);
    let worker = WorkerLoop::new(
        queue.queue.clone(),
        handler.clone(),
        run_config(1, Duration::from_millis(200)),
    );
    let started = handler.clone();
    let summary = worker
        .run(async move { started.first_start.notified().await })
        .await
        .unwrap();

    assert_eq!(summary.released, 1);
    assert_eq!(summary.succeeded, 0);
    assert_eq!(
        handler.started.load(Ordering::SeqCst),
        1,
        "the second job was never started"
    );
    let stats = queue.queue.stats(QUEUE).await.unwrap();
    assert_eq!((stats.ready, stats.processing, stats.delayed), (2, 0, 0));
    queue
        .queue
        .heartbeat("check", Duration::from_secs(10))
        .await
        .unwrap();
    let again = queue
        .queue
        .reserve(QUEUE, "check", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.envelope.attempt, 0, "a release is not a failure");
}

#[tokio::test]
async fn shutdown_lets_in_flight_jobs_finish_within_the_grace_period() {
    let queue = TestQueue::sqlite().await;
    enqueue(queue.queue.as_ref(), 2).await;
    let handler = TestHandler::new(Duration::from_millis(300), false);
    let worker = WorkerLoop::new(
        queue.queue.clone(),
        handler.clone(),
        run_config(1, Duration::from_secs(5)),
    );
    let started = handler.clone();
    let summary = worker
        .run(async move { started.first_start.notified().await })
        .await
        .unwrap();

    assert_eq!(summary.succeeded, 1);
    assert_eq!(summary.released, 0);
    let stats = queue.queue.stats(QUEUE).await.unwrap();
    assert_eq!(
        (stats.ready, stats.processing),
        (1, 0),
        "the unstarted job stays ready"
    );
}

#[tokio::test]
async fn failing_jobs_retry_with_backoff_then_die_once() {
    let queue = TestQueue::sqlite().await; // max_attempts 3, backoff 200–400 ms
    enqueue(queue.queue.as_ref(), 1).await;
    let handler = TestHandler::new(Duration::ZERO, true);
    let worker = WorkerLoop::new(
        queue.queue.clone(),
        handler.clone(),
        run_config(1, Duration::from_secs(1)),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = rx.await;
    }));
    let h = handler.clone();
    let died = eventually(Duration::from_secs(10), || {
        let h = h.clone();
        async move { h.dead.load(Ordering::SeqCst) == 1 }
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();
    assert!(died, "summary {summary:?}");
    assert_eq!(handler.started.load(Ordering::SeqCst), 3);
    assert_eq!(summary.failed, 3);
    let dead = queue.queue.dead(QUEUE).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("engine on fire"), "{:?}", dead[0]);
}

/// Each job waits at a barrier for the other three: the barrier opens only when four handlers
/// run at the same time, so all four succeed only if the slots really work concurrently. No
/// clock decides it (the 30 s bound only keeps a broken loop from hanging the test).
struct Rendezvous {
    barrier: tokio::sync::Barrier,
}

#[async_trait]
impl JobHandler for Rendezvous {
    type Job = TestJob;

    async fn perform(&self, _job: TestJob, _envelope: &Envelope) -> Result<(), JobError> {
        match tokio::time::timeout(Duration::from_secs(30), self.barrier.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(JobError::Permanent(
                "the other jobs never ran alongside".into(),
            )),
        }
    }
}

#[tokio::test]
async fn slots_process_jobs_concurrently() {
    let queue = TestQueue::sqlite().await;
    enqueue(queue.queue.as_ref(), 4).await;
    let handler = Arc::new(Rendezvous {
        barrier: tokio::sync::Barrier::new(4),
    });
    let worker = WorkerLoop::new(
        queue.queue.clone(),
        handler,
        run_config(4, Duration::from_secs(5)),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = rx.await;
    }));
    let q = queue.queue.clone();
    let drained = eventually(Duration::from_secs(60), || {
        let q = q.clone();
        async move {
            let stats = q.stats(QUEUE).await.unwrap();
            stats.ready + stats.processing + stats.delayed + stats.dead == 0
        }
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();
    assert!(drained, "the jobs did not finish: {summary:?}");
    assert_eq!(summary.succeeded, 4, "4 jobs should meet at the barrier");
    assert_eq!(summary.failed, 0);
}

#[tokio::test]
async fn jobs_of_another_kind_fail() {
    let queue = TestQueue::sqlite().await;
    queue
        .queue
        .enqueue(QUEUE, "other", serde_json::json!({}))
        .await
        .unwrap();
    let handler = TestHandler::new(Duration::ZERO, false);
    let mut config = run_config(1, Duration::from_secs(1));
    config.maintenance_interval = Duration::from_secs(60);
    let worker = WorkerLoop::new(queue.queue.clone(), handler.clone(), config);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = rx.await;
    }));
    let q = queue.queue.clone();
    // A job of another kind can never be handled here: a permanent failure, dead at once.
    let dead = eventually(Duration::from_secs(5), || {
        let q = q.clone();
        async move { q.stats(QUEUE).await.unwrap().dead == 1 }
    })
    .await;
    let _ = tx.send(());
    running.await.unwrap().unwrap();
    assert!(dead);
    let entry = &queue.queue.dead(QUEUE).await.unwrap()[0];
    assert_eq!(entry.attempt, 1, "{entry:?}");
    assert!(
        entry.reason.contains("unexpected job kind `other`"),
        "{entry:?}"
    );
    assert_eq!(handler.started.load(Ordering::SeqCst), 0);
}

/// A process restarted under a fixed `WORKER_ID` heartbeats at once, so the reaper never sees
/// its predecessor's jobs as orphaned; the loop returns them itself before it starts.
async fn jobs_left_under_a_reused_worker_id_are_run(queue: Arc<dyn ReliableQueue>) {
    enqueue(queue.as_ref(), 2).await;
    // The predecessor took both jobs and died with a heartbeat that is still alive.
    queue
        .heartbeat("fixed-id", Duration::from_secs(60))
        .await
        .unwrap();
    for _ in 0..2 {
        queue
            .reserve(QUEUE, "fixed-id", Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
    }
    let handler = TestHandler::new(Duration::ZERO, false);
    let mut config = run_config(1, Duration::from_secs(1));
    config.worker_id = "fixed-id".into();
    let worker = WorkerLoop::new(queue.clone(), handler.clone(), config);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = rx.await;
    }));
    let h = handler.clone();
    let done = eventually(Duration::from_secs(10), || {
        let h = h.clone();
        async move { h.finished.load(Ordering::SeqCst) == 2 }
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();
    assert!(done, "the predecessor's jobs were never run; {summary:?}");
    assert_eq!(summary.succeeded, 2);
    assert_eq!(
        queue.stats(QUEUE).await.unwrap(),
        job_queue::QueueStats::default()
    );
}

/// A `reserve` whose reply was lost leaves the job with a living worker; the maintenance loop
/// returns it once it has sat unworked for `stranded_after`.
async fn a_job_held_but_never_received_is_returned(queue: Arc<dyn ReliableQueue>) {
    enqueue(queue.as_ref(), 1).await;
    // One slot, busy with the first job for a while.
    let handler = TestHandler::new(Duration::from_millis(1500), false);
    let mut config = run_config(1, Duration::from_secs(5));
    config.worker_id = "auditing-worker".into();
    config.stranded_after = Duration::from_millis(300);
    let worker = WorkerLoop::new(queue.clone(), handler.clone(), config);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = rx.await;
    }));
    handler.first_start.notified().await;
    // The lost reply: the job moves to the worker's processing area, no slot ever sees it.
    queue
        .enqueue(QUEUE, "test", serde_json::json!({ "n": "lost" }))
        .await
        .unwrap();
    let lost = queue
        .reserve(QUEUE, "auditing-worker", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lost.envelope.payload, serde_json::json!({ "n": "lost" }));

    // Only a release can bring it back to the one slot: the worker keeps heartbeating, so the
    // reaper never touches it.
    let h = handler.clone();
    let done = eventually(Duration::from_secs(10), || {
        let h = h.clone();
        async move { h.finished.load(Ordering::SeqCst) == 2 }
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();
    assert!(done, "{summary:?}");
    assert_eq!(
        queue.stats(QUEUE).await.unwrap(),
        job_queue::QueueStats::default()
    );
}

#[tokio::test]
async fn jobs_left_under_a_reused_worker_id_are_run_on_sqlite() {
    let queue = TestQueue::sqlite().await;
    jobs_left_under_a_reused_worker_id_are_run(queue.queue.clone()).await;
}

#[tokio::test]
async fn jobs_left_under_a_reused_worker_id_are_run_on_redis() {
    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    jobs_left_under_a_reused_worker_id_are_run(redis.queue.clone()).await;
}

#[tokio::test]
async fn a_job_held_but_never_received_is_returned_on_sqlite() {
    let queue = TestQueue::sqlite().await;
    a_job_held_but_never_received_is_returned(queue.queue.clone()).await;
}

#[tokio::test]
async fn a_job_held_but_never_received_is_returned_on_redis() {
    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    a_job_held_but_never_received_is_returned(redis.queue.clone()).await;
}
