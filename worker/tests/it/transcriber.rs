//! The transcriber against the real platform (see [`crate::platform`]): records are created
//! through transcription-api's `POST /transcriptions`, which queues their jobs; the worker
//! gets its own client_credentials token (`transcriptions:report`) from the real auth server
//! and reports to the real API, which verifies it against the auth server's JWKS; every
//! outcome is read back through the API's `GET /transcriptions/{id}`.
//!
//! The one stand-in left is a closed port for an unreachable API; stalled servers are in
//! `deadlines.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::jobs::{NotifyJob, TranscribeJob};
use job_queue::{Job, QueueStats, ReliableQueue};
use secrecy::{ExposeSecret, SecretString};
use token_guard::revocation::CutoffKind;
use uuid::Uuid;
use worker::api::{ClientCredentials, TokenSource};
use worker::download::DownloadLimits;
use worker::engine::{Engine, EngineError, SimulatedEngine};
use worker::runner::JobHandler;
use worker::{EngineConfig, JobError, RunConfig, Transcriber, TranscriberConfig};

use crate::download::{AUDIO_TRANSCRIPT, audio_host};
use crate::helpers::{TempDir, TestQueue, eventually};
use crate::platform::{READ, REPORT, TestPlatform, WRITE, take_job};
use test_support::net::closed_port;

pub const SUBMITTER_EMAIL: &str = "listener@example.com";

pub fn transcriber_config(
    api_url: &str,
    credentials: ClientCredentials,
    scratch: &TempDir,
) -> TranscriberConfig {
    let mut run = RunConfig::new("transcriber", TranscribeJob::QUEUE);
    run.reserve_wait = Duration::from_millis(200);
    run.maintenance_interval = Duration::from_millis(100);
    run.shutdown_grace = Duration::from_secs(5);
    TranscriberConfig {
        run,
        notify_queue: NotifyJob::QUEUE.into(),
        api_url: api_url.into(),
        credentials,
        download: DownloadLimits {
            allow_private: true,
            timeout: Duration::from_secs(5),
            ..DownloadLimits::default()
        },
        engine: EngineConfig::Simulated {
            delay: Duration::from_millis(10),
        },
        scratch_dir: scratch.path().to_path_buf(),
        api_timeout: Duration::from_secs(5),
    }
}

/// The transcriber of `platform`'s worker client.
fn transcriber(platform: &TestPlatform, queue: &TestQueue, scratch: &TempDir) -> Transcriber {
    let config = transcriber_config(&platform.api_url, platform.worker_credentials(), scratch);
    Transcriber::new(config, queue.queue.clone()).unwrap()
}

/// Takes the one notify job off the queue and returns its id and payload.
async fn take_notify(queue: &dyn ReliableQueue) -> (String, serde_json::Value) {
    let envelope = take_job(queue, NotifyJob::QUEUE).await;
    assert_eq!(envelope.kind, "notify");
    (envelope.id.to_string(), envelope.payload)
}

#[tokio::test]
async fn a_submitted_transcription_is_completed_through_the_real_api_and_notify_is_enqueued() {
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let host = audio_host().await;
    let scratch = TempDir::new("scratch");
    let id = platform
        .submit(SUBMITTER_EMAIL, &format!("http://{host}/audio"))
        .await;

    let transcriber = transcriber(&platform, &queue, &scratch);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(transcriber.run(async {
        let _ = rx.await;
    }));
    let q = queue.queue.clone();
    let done = eventually(Duration::from_secs(20), || {
        let q = q.clone();
        async move { q.stats(NotifyJob::QUEUE).await.unwrap().ready == 1 }
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();
    assert!(done, "no notify job; summary {summary:?}");
    assert_eq!(summary.succeeded, 1);
    assert_eq!(summary.failed, 0);

    let expected = AUDIO_TRANSCRIPT.to_owned();
    let record = platform.transcription(id).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["transcript"], expected.as_str());
    assert!(record.get("error").is_none(), "{record}");
    assert_eq!(
        record["notification"],
        serde_json::json!({"status": "pending"}),
        "no notifier ran"
    );
    assert_eq!(
        queue.queue.stats(TranscribeJob::QUEUE).await.unwrap(),
        QueueStats::default(),
        "the transcribe job was acked"
    );
    let (job_id, payload) = take_notify(queue.queue.as_ref()).await;
    assert_eq!(job_id, format!("notify-{id}"));
    assert_eq!(
        payload,
        serde_json::json!({"transcription_id": id, "email": SUBMITTER_EMAIL,
                           "transcript": expected, "status": "completed"})
    );
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "audio removed"
    );
}

#[tokio::test]
async fn the_worker_token_is_cached_until_invalidated() {
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let tokens = TokenSource::new(reqwest::Client::new(), platform.worker_credentials());

    let first = tokens.token().await.unwrap();
    let again = tokens.token().await.unwrap();
    tokens.invalidate().await;
    let fresh = tokens.token().await.unwrap();

    assert_eq!(first.expose_secret(), again.expose_secret(), "cached");
    assert_ne!(first.expose_secret(), fresh.expose_secret(), "fetched anew");
    // A real access token of the worker: the API takes it for a report.
    let id = platform
        .submit(SUBMITTER_EMAIL, "http://203.0.113.1/a")
        .await;
    let processing = serde_json::json!({"status": "processing"});
    assert_eq!(
        platform
            .report_with(fresh.expose_secret(), id, &processing)
            .await,
        204
    );
    assert_eq!(platform.status(id).await, "processing");
}

#[tokio::test]
async fn unreachable_result_api_makes_the_job_retry_with_backoff() {
    let queue = TestQueue::sqlite().await;
    // The real auth server hands out the token; nobody listens where the API should be.
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let host = audio_host().await;
    let scratch = TempDir::new("scratch");
    let port = closed_port();
    let api = format!("http://127.0.0.1:{port}");
    let job = TranscribeJob {
        transcription_id: Uuid::new_v4(),
        audio_url: format!("http://{host}/audio"),
        email: SUBMITTER_EMAIL.into(),
    };
    queue
        .queue
        .enqueue_job(TranscribeJob::QUEUE, job.to_job().unwrap())
        .await
        .unwrap();

    let mut config = transcriber_config(&api, platform.worker_credentials(), &scratch);
    // Keep the retry in the delayed set while we look.
    config.run.maintenance_interval = Duration::from_secs(60);
    let transcriber = Transcriber::new(config, queue.queue.clone()).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(transcriber.run(async {
        let _ = rx.await;
    }));
    let q = queue.queue.clone();
    let delayed = eventually(Duration::from_secs(10), || {
        let q = q.clone();
        async move { q.stats(TranscribeJob::QUEUE).await.unwrap().delayed == 1 }
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();
    assert!(delayed, "job not delayed; summary {summary:?}");
    assert_eq!(summary.failed, 1);
    assert_eq!(summary.succeeded, 0);
    assert_eq!(queue.queue.stats(NotifyJob::QUEUE).await.unwrap().ready, 0);
    assert!(
        queue
            .queue
            .dead(TranscribeJob::QUEUE)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn audio_that_cannot_be_fetched_is_reported_failed_and_notified() {
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let host = audio_host().await;
    let scratch = TempDir::new("scratch");
    let transcriber = transcriber(&platform, &queue, &scratch);
    let id = platform
        .submit(SUBMITTER_EMAIL, &format!("http://{host}/status/404"))
        .await;
    let job = take_job(queue.queue.as_ref(), TranscribeJob::QUEUE).await;

    transcriber.handler().handle(&job).await.unwrap();

    let record = platform.transcription(id).await;
    assert_eq!(record["status"], "failed", "{record}");
    // The owner is told the class of the failure, not what the audio host answered.
    assert_eq!(
        record["error"], "the audio could not be downloaded (http_status)",
        "{record}"
    );
    assert!(record.get("transcript").is_none(), "{record}");
    let (_, payload) = take_notify(queue.queue.as_ref()).await;
    assert_eq!(payload["status"], "failed");
    assert_eq!(payload["email"], SUBMITTER_EMAIL);
    assert_eq!(payload["transcript"], "");
}

#[tokio::test]
async fn private_audio_urls_are_refused_by_default() {
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let host = audio_host().await;
    let scratch = TempDir::new("scratch");
    let mut config = transcriber_config(&platform.api_url, platform.worker_credentials(), &scratch);
    config.download.allow_private = false;
    let transcriber = Transcriber::new(config, queue.queue.clone()).unwrap();
    let id = platform
        .submit(SUBMITTER_EMAIL, &format!("http://{host}/audio"))
        .await;
    let job = take_job(queue.queue.as_ref(), TranscribeJob::QUEUE).await;

    transcriber.handler().handle(&job).await.unwrap();

    let record = platform.transcription(id).await;
    assert_eq!(record["status"], "failed", "{record}");
    // One generic text and the class: no host, address or port of the refused target.
    assert_eq!(
        record["error"], "the audio could not be downloaded (refused_address)",
        "{record}"
    );
}

/// An engine that tells the test it started and waits for the test to let it finish.
struct GatedEngine {
    started: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Engine for GatedEngine {
    fn name(&self) -> &'static str {
        "gated"
    }

    async fn transcribe(&self, audio: &Path) -> Result<String, EngineError> {
        self.started.notify_one();
        self.release.notified().await;
        let bytes = tokio::fs::read(audio).await.map_err(EngineError::Read)?;
        Ok(SimulatedEngine::transcript_for(&bytes))
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn a_revoked_worker_token_is_replaced_after_the_401() {
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let host = audio_host().await;
    let scratch = TempDir::new("scratch");
    let (started, release) = (Arc::default(), Arc::default());
    let engine = GatedEngine {
        started: Arc::clone(&started),
        release: Arc::clone(&release),
    };
    let config = transcriber_config(&platform.api_url, platform.worker_credentials(), &scratch);
    let transcriber =
        Transcriber::with_engine(config, queue.queue.clone(), Arc::new(engine)).unwrap();
    let id = platform
        .submit(SUBMITTER_EMAIL, &format!("http://{host}/audio"))
        .await;
    let job = take_job(queue.queue.as_ref(), TranscribeJob::QUEUE).await;
    let handler = transcriber.handler();
    let handling = tokio::spawn(async move { handler.handle(&job).await });

    // `processing` went through with the worker's cached token; the engine is running.
    started.notified().await;
    assert_eq!(platform.status(id).await, "processing");
    let old_token = platform.auth.client_token(&platform.worker_client).await;
    // An operator revokes the worker client's tokens issued so far (`auth-server tokens
    // revoke --client`), which the API learns from its deny-list.
    let cutoff = unix_ms();
    platform.revocations.insert_cutoff(
        CutoffKind::Client,
        platform.worker_client.0.clone(),
        cutoff,
        cutoff / 1000 + 3600,
    );
    let processing = serde_json::json!({"status": "processing"});
    assert_eq!(
        platform.report_with(&old_token, id, &processing).await,
        401,
        "a token issued before the cutoff is refused"
    );
    // Tokens issued after the cutoff (in a later millisecond) are valid again.
    assert!(eventually(Duration::from_secs(5), || async { unix_ms() > cutoff }).await);
    release.notify_one();

    handling
        .await
        .unwrap()
        .expect("the job succeeds with a fresh token");
    let record = platform.transcription(id).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["transcript"], AUDIO_TRANSCRIPT);
}

#[tokio::test]
async fn a_job_without_a_record_is_acknowledged_as_obsolete_not_dead_lettered() {
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let scratch = TempDir::new("scratch");
    let transcriber = transcriber(&platform, &queue, &scratch);
    // A late duplicate of a record that is gone: the API has never heard of this id.
    let job = TranscribeJob {
        transcription_id: Uuid::new_v4(),
        audio_url: "http://203.0.113.1/never-fetched".into(),
        email: SUBMITTER_EMAIL.into(),
    };
    queue
        .queue
        .enqueue_job(TranscribeJob::QUEUE, job.to_job().unwrap())
        .await
        .unwrap();
    let envelope = take_job(queue.queue.as_ref(), TranscribeJob::QUEUE).await;

    transcriber
        .handler()
        .handle(&envelope)
        .await
        .expect("an obsolete job is acknowledged");
    assert_eq!(queue.queue.stats(NotifyJob::QUEUE).await.unwrap().ready, 0);
}

#[tokio::test]
async fn a_redelivered_job_of_a_final_transcription_changes_nothing_and_notifies_once() {
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let host = audio_host().await;
    let scratch = TempDir::new("scratch");
    let transcriber = transcriber(&platform, &queue, &scratch);
    let id = platform
        .submit(SUBMITTER_EMAIL, &format!("http://{host}/audio"))
        .await;
    let job = take_job(queue.queue.as_ref(), TranscribeJob::QUEUE).await;

    transcriber.handler().handle(&job).await.unwrap();
    let first = platform.transcription(id).await;
    // The redelivery reports `processing` (409: already final, taken as success) and the
    // identical `completed` (204), then enqueues notify-<id> again.
    transcriber.handler().handle(&job).await.unwrap();
    let second = platform.transcription(id).await;

    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first, second, "the redelivery changed the record");
    assert_eq!(
        queue.queue.stats(NotifyJob::QUEUE).await.unwrap().ready,
        1,
        "the second notify-<id> is deduplicated by the queue"
    );
}

#[tokio::test]
async fn wrong_client_secret_is_a_transient_failure() {
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let scratch = TempDir::new("scratch");
    let mut credentials = platform.worker_credentials();
    credentials.client_secret = SecretString::from("wrong".to_owned());
    let config = transcriber_config(&platform.api_url, credentials, &scratch);
    let transcriber = Transcriber::new(config, queue.queue.clone()).unwrap();
    let id = platform
        .submit(SUBMITTER_EMAIL, "http://203.0.113.1/a")
        .await;
    let job = take_job(queue.queue.as_ref(), TranscribeJob::QUEUE).await;

    let err = transcriber.handler().handle(&job).await.unwrap_err();
    assert!(
        matches!(&err, JobError::Transient(m) if m.contains("token endpoint") && m.contains("invalid_client")),
        "{err:?}"
    );
    assert_eq!(platform.status(id).await, "queued");
}

#[tokio::test]
async fn a_worker_client_without_the_report_scope_gets_no_token_and_retries() {
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let scratch = TempDir::new("scratch");
    // Registered with the submitting scopes instead of `transcriptions:report`; the worker
    // asks for `transcriptions:report` as always, and the auth server refuses to grant it.
    let client = platform.auth.client(&[WRITE, READ]).await;
    let config = transcriber_config(
        &platform.api_url,
        platform.credentials_of(&client, REPORT),
        &scratch,
    );
    let transcriber = Transcriber::new(config, queue.queue.clone()).unwrap();
    let id = platform
        .submit(SUBMITTER_EMAIL, "http://203.0.113.1/a")
        .await;
    let job = take_job(queue.queue.as_ref(), TranscribeJob::QUEUE).await;

    let err = transcriber.handler().handle(&job).await.unwrap_err();
    assert!(
        matches!(&err, JobError::Transient(m) if m.contains("invalid_scope")),
        "{err:?}"
    );
    assert_eq!(platform.status(id).await, "queued");
}

#[tokio::test]
async fn a_token_without_the_report_scope_is_refused_by_the_api_and_the_job_dead_lettered() {
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let host = audio_host().await;
    let scratch = TempDir::new("scratch");
    // A worker misconfigured with a reading client: it gets a real token, for the wrong scope.
    let client = platform.auth.client(&[READ]).await;
    let config = transcriber_config(
        &platform.api_url,
        platform.credentials_of(&client, READ),
        &scratch,
    );
    let transcriber = Transcriber::new(config, queue.queue.clone()).unwrap();
    let id = platform
        .submit(SUBMITTER_EMAIL, &format!("http://{host}/audio"))
        .await;

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(transcriber.run(async {
        let _ = rx.await;
    }));
    let q = queue.queue.clone();
    let dead = eventually(Duration::from_secs(20), || {
        let q = q.clone();
        async move { q.stats(TranscribeJob::QUEUE).await.unwrap().dead == 1 }
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();
    assert!(dead, "the job did not die; summary {summary:?}");

    // The API's scope check (403 insufficient_scope) cannot be cured by retrying: dead at the
    // first delivery, with nobody told, and the record untouched.
    assert_eq!(summary.failed, 1, "{summary:?}");
    assert_eq!(summary.succeeded, 0, "{summary:?}");
    let entry = &queue.queue.dead(TranscribeJob::QUEUE).await.unwrap()[0];
    assert_eq!(entry.id, id.to_string());
    assert_eq!(entry.attempt, 1, "buried, not retried: {entry:?}");
    assert!(entry.reason.contains("HTTP 403"), "{entry:?}");
    assert_eq!(platform.status(id).await, "queued");
    assert_eq!(
        queue.queue.stats(NotifyJob::QUEUE).await.unwrap(),
        QueueStats::default()
    );
}
