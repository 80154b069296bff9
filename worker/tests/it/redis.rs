//! The same worker paths on the Redis queue (skipped with a message when Redis is
//! unreachable, unless CI=true).

use std::process::Command;

use uuid::Uuid;
use worker::jobs::{NOTIFY_QUEUE, NotifyJob, NotifyStatus};

use crate::helpers::{RedisTestQueue, SIGNING_KEY, TempDir};
use crate::smtp_sink::SmtpSink;

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
        .enqueue_job(NOTIFY_QUEUE, job.to_job().unwrap())
        .await
        .unwrap();
    let again = redis
        .queue
        .enqueue_job(NOTIFY_QUEUE, job.to_job().unwrap())
        .await
        .unwrap();
    assert!(again.duplicate);

    crate::notifier::run_notifier_until(redis.queue.clone(), &sink, &dir, 1).await;

    let mail = sink.received();
    assert_eq!(mail.len(), 1);
    assert!(mail[0].body().contains("through redis"));
    assert_eq!(
        redis.queue.stats(NOTIFY_QUEUE).await.unwrap(),
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
