//! The same worker paths on the Redis queue (skipped with a message when Redis is
//! unreachable, unless CI=true).

use std::process::Command;

use contracts::jobs::{NotifyJob, NotifyStatus};
use job_queue::Job;
use uuid::Uuid;

use crate::helpers::{RedisTestQueue, SIGNING_KEY, TempDir};
use test_support::smtp::SmtpSink;

#[tokio::test]
async fn notify_job_through_redis_is_delivered_once() {
    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("redis-notify");
    let job = NotifyJob {
        transcription_id: Uuid::new_v4(),
        email: "listener@example.com".into(),
        transcript: "through redis".into(),
        status: NotifyStatus::Completed,
    };
    redis
        .queue
        .enqueue_job(NotifyJob::QUEUE, job.to_job().unwrap())
        .await
        .unwrap();
    let again = redis
        .queue
        .enqueue_job(NotifyJob::QUEUE, job.to_job().unwrap())
        .await
        .unwrap();
    assert!(again.duplicate);

    crate::notifier::run_notifier_until(redis.queue.clone(), &sink, &dir, 1).await;

    let mail = sink.received();
    assert_eq!(mail.len(), 1);
    assert!(mail[0].body().contains("through redis"));
    assert_eq!(
        redis.queue.stats(NotifyJob::QUEUE).await.unwrap(),
        job_queue::QueueStats::default()
    );
}

#[tokio::test]
async fn queue_stats_cli_reads_redis() {
    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    redis
        .queue
        .enqueue("transcribe", "transcribe", serde_json::json!({}))
        .await
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["queue", "stats", "--queue", "transcribe", "--json"])
        .env_clear()
        .env("REDIS_URL", &redis.url)
        .env("QUEUE_PREFIX", &redis.prefix)
        .env("JOB_SIGNING_KEY", SIGNING_KEY)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(stats["transcribe"]["ready"], 1);
}

/// A `test` job (payload `{"n": …}`).
#[derive(serde::Serialize, serde::Deserialize)]
struct TestJob {}

impl job_queue::Job for TestJob {
    const JOB_NAME: &'static str = "test";
    const QUEUE: &'static str = "transcribe";
}

/// Counts the jobs it completes.
#[derive(Default)]
struct CountingHandler {
    done: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl worker::JobHandler for CountingHandler {
    type Job = TestJob;

    async fn perform(
        &self,
        _job: TestJob,
        _envelope: &job_queue::Envelope,
    ) -> Result<(), worker::JobError> {
        self.done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// Issue 12's repro, verbatim: `printf '\xff\xfe' | redis-cli -x lpush <prefix>:transcribe:ready`
/// used to leave the bytes in the worker's processing list for ever (and fail its held-jobs
/// audit every 2 s). Now they go to the dead list and the jobs around them complete.
#[tokio::test]
async fn non_utf8_bytes_pushed_with_redis_cli_are_dead_lettered() {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    let queue = redis.queue.clone();
    queue
        .enqueue("transcribe", "test", serde_json::json!({ "n": 1 }))
        .await
        .unwrap();
    let child = Command::new("redis-cli")
        .args(["-u", &redis.url, "-x", "lpush"])
        .arg(format!("{}:transcribe:ready", redis.prefix))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if !test_support::ci::in_ci() => {
            eprintln!("skipping: redis-cli not runnable ({e})");
            return;
        }
        Err(e) => panic!("redis-cli is required when CI=true: {e}"),
    };
    child.stdin.take().unwrap().write_all(b"\xff\xfe").unwrap();
    assert!(child.wait().unwrap().success());
    queue
        .enqueue("transcribe", "test", serde_json::json!({ "n": 2 }))
        .await
        .unwrap();

    let handler = std::sync::Arc::new(CountingHandler::default());
    let mut config = worker::RunConfig::new("poison", "transcribe");
    config.reserve_wait = Duration::from_millis(100);
    config.maintenance_interval = Duration::from_millis(50);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(
        worker::WorkerLoop::new(queue.clone(), handler.clone(), config).run(async {
            let _ = rx.await;
        }),
    );
    let h = handler.clone();
    let q = queue.clone();
    let settled = crate::helpers::eventually(Duration::from_secs(10), || {
        let (h, q) = (h.clone(), q.clone());
        async move {
            let stats = q.stats("transcribe").await.unwrap();
            h.done.load(Ordering::SeqCst) == 2 && stats.dead == 1 && stats.processing == 0
        }
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();
    assert!(settled, "{summary:?} {:?}", queue.stats("transcribe").await);
    assert_eq!(summary.succeeded, 2);
    let dead = queue.dead("transcribe").await.unwrap();
    assert!(!dead[0].verified);
    assert!(dead[0].reason.contains("not UTF-8"), "{:?}", dead[0]);
    assert_eq!(
        queue.stats("transcribe").await.unwrap(),
        job_queue::QueueStats {
            dead: 1,
            ..Default::default()
        }
    );
}

/// README, Fault tolerance: the notifier's sent-marker lives where the queue is, on Redis
/// `SET NX` with a 30-day TTL. A `worker notifier` process with its defaults sends one mail
/// over SMTP; then `<prefix>:_marker:notify-sent:<transcription id>` exists, and Redis drops
/// it 30 days after the notifier set it (its value is the notifier's clock then; see
/// [`redis_value_and_expiry`]).
#[tokio::test]
async fn the_sent_marker_lives_30_days_in_redis() {
    use std::time::Duration;

    use test_support::process::{ServiceProcess, Signal};

    use crate::helpers::{eventually, redis_connection, redis_value_and_expiry};

    const THIRTY_DAYS_MS: i64 = 30 * 24 * 60 * 60 * 1000;
    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("marker-ttl");
    let job = NotifyJob {
        transcription_id: Uuid::new_v4(),
        email: "listener@example.com".into(),
        transcript: "remembered for a month".into(),
        status: NotifyStatus::Completed,
    };
    redis
        .queue
        .enqueue_job(NotifyJob::QUEUE, job.to_job().unwrap())
        .await
        .unwrap();
    let mut notifier = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["notifier"],
        &[
            ("REDIS_URL", redis.url.clone()),
            ("QUEUE_PREFIX", redis.prefix.clone()),
            ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
            ("SMTP_URL", format!("{}?tls=none", sink.url())),
            ("LOG_FORMAT", "json".to_owned()),
        ],
        &dir.path().join("logs"),
    );
    // The marker is written after the server accepted the mail and before the ack.
    let queue = redis.queue.clone();
    let sink = &sink;
    let done = eventually(Duration::from_secs(60), || {
        let queue = queue.clone();
        async move {
            sink.received().len() == 1
                && queue.stats(NotifyJob::QUEUE).await.unwrap() == job_queue::QueueStats::default()
        }
    })
    .await;
    assert!(done, "the mail was not sent\n{}", notifier.output());

    let key = format!(
        "{}:_marker:notify-sent:{}",
        redis.prefix, job.transcription_id
    );
    let mut conn = redis_connection(&redis.url).await;
    let (set_at, expires_at) = redis_value_and_expiry(&mut conn, &key)
        .await
        .unwrap_or_else(|| panic!("no marker `{key}`\n{}", notifier.output()));
    let lifetime = expires_at - set_at;
    assert!(
        (THIRTY_DAYS_MS..THIRTY_DAYS_MS + 5_000).contains(&lifetime),
        "the marker lives 30 days ({THIRTY_DAYS_MS} ms), this one {lifetime} ms"
    );
    notifier.stop_cleanly(Signal::Term).await;
}
