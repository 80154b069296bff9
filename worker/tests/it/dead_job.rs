//! The transcriber's dead-job path, end to end on the real platform: a transcription whose
//! audio host answers 503 to every download (a transient failure, so the job is retried) goes
//! through `QUEUE_MAX_ATTEMPTS` (3 in tests) deliveries, lands on the dead list, and then the
//! transcriber's compensation reports the record `failed` to transcription-api and queues the
//! notice; the notifier mails the submitter over SMTP and reports the notification `sent`.
//! Once on the embedded queue (API on SQLite), once on Redis (API on PostgreSQL).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use contracts::jobs::{NotifyJob, TranscribeJob};
use job_queue::{Job, QueueStats, ReliableQueue};
use worker::notifier::ReportConfig;
use worker::{Notifier, Transcriber};

use crate::helpers::{RedisTestQueue, TempDir, TestQueue, eventually, serve};
use crate::notifier::notifier_config;
use crate::platform::TestPlatform;
use crate::transcriber::{SUBMITTER_EMAIL, transcriber_config};
use test_support::smtp::SmtpSink;

/// What the owner reads once the worker gave up on a download that kept failing.
const GAVE_UP: &str =
    "gave up after repeated failures: the audio could not be downloaded (http_status)";

/// An audio host whose `/audio` always answers 503, counting the requests.
async fn unavailable_audio_host() -> (String, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    let router = Router::new().route(
        "/audio",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::SERVICE_UNAVAILABLE }
        }),
    );
    (format!("http://{}/audio", serve(router).await), hits)
}

async fn a_dead_transcription_is_reported_failed_and_the_submitter_mailed(
    queue: Arc<dyn ReliableQueue>,
    platform: TestPlatform,
) {
    let (audio_url, downloads) = unavailable_audio_host().await;
    let sink = SmtpSink::start().await;
    let scratch = TempDir::new("dead-scratch");
    let dir = TempDir::new("dead-notifier");
    let id = platform.submit(SUBMITTER_EMAIL, &audio_url).await;

    let transcriber = Transcriber::new(
        transcriber_config(&platform.api_url, platform.worker_credentials(), &scratch),
        queue.clone(),
    )
    .unwrap();
    let mut config = notifier_config(Some(format!("{}?tls=none", sink.url())), &dir);
    config.report = Some(ReportConfig {
        api_url: platform.api_url.clone(),
        credentials: platform.worker_credentials(),
    });
    let notifier = Notifier::new(config, queue.clone()).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let transcribing = tokio::spawn(transcriber.run(stop(rx.clone())));
    let notifying = tokio::spawn(notifier.run(stop(rx.clone())));

    let platform = &platform;
    let q = queue.clone();
    let settled = eventually(Duration::from_secs(60), || {
        let q = q.clone();
        async move {
            let record = platform.transcription(id).await;
            record["status"] == "failed"
                && record["notification"]["status"] == "sent"
                && q.stats(NotifyJob::QUEUE).await.unwrap() == QueueStats::default()
        }
    })
    .await;
    let _ = tx.send(true);
    let transcribed = transcribing.await.unwrap().unwrap();
    let notified = notifying.await.unwrap().unwrap();
    assert!(
        settled,
        "not settled: {}, transcribe {:?}, notify {:?}, {} mails; {transcribed:?} {notified:?}",
        platform.transcription(id).await,
        queue.stats(TranscribeJob::QUEUE).await.unwrap(),
        queue.stats(NotifyJob::QUEUE).await.unwrap(),
        sink.received().len()
    );

    // Three deliveries, three downloads, then the dead list.
    assert_eq!(transcribed.failed, 3, "{transcribed:?}");
    assert_eq!(transcribed.succeeded, 0, "{transcribed:?}");
    assert_eq!(downloads.load(Ordering::SeqCst), 3);
    let dead = queue.dead(TranscribeJob::QUEUE).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id, id.to_string());
    assert_eq!(dead[0].attempt, 3, "{:?}", dead[0]);
    assert_eq!(
        dead[0].reason,
        "failed 3 times; last error: the audio could not be downloaded (http_status)"
    );

    // What the owner sees through the API: failed, the generic text, and the e-mail sent.
    let record = platform.transcription(id).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"], GAVE_UP, "{record}");
    assert!(record.get("transcript").is_none(), "{record}");
    assert_eq!(
        record["notification"],
        serde_json::json!({"status": "sent"}),
        "{record}"
    );

    // The notify job ran once and was acked; the submitter got one mail saying it failed.
    assert_eq!(notified.succeeded, 1, "{notified:?}");
    let mail = sink.received();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0].recipients, [SUBMITTER_EMAIL]);
    assert_eq!(
        mail[0].header("Subject").unwrap(),
        "Your transcription failed"
    );
    assert_eq!(
        mail[0].header("Message-ID").unwrap(),
        format!("<notify-{id}@transcribe.test>")
    );
    let body = mail[0].body();
    assert!(body.contains("could not be transcribed"), "{body}");
    assert!(body.contains(&id.to_string()), "{body}");
}

#[tokio::test]
async fn a_dead_transcription_on_the_embedded_queue_is_reported_failed_and_mailed() {
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    a_dead_transcription_is_reported_failed_and_the_submitter_mailed(queue.queue.clone(), platform)
        .await;
}

#[tokio::test]
async fn a_dead_transcription_on_redis_is_reported_failed_and_mailed() {
    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    let Some(platform) = TestPlatform::start_on_postgres(redis.queue.clone()).await else {
        return;
    };
    a_dead_transcription_is_reported_failed_and_the_submitter_mailed(redis.queue.clone(), platform)
        .await;
}
