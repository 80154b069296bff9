//! The transcriber against the real auth server (client_credentials tokens), a stub of
//! transcription-api's result endpoint that records what it receives, and the audio host.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::put;
use job_queue::{Envelope, JobId, ReliableQueue};
use secrecy::SecretString;
use uuid::Uuid;
use worker::api::ClientCredentials;
use worker::download::DownloadLimits;
use worker::jobs::{NOTIFY_QUEUE, TRANSCRIBE_QUEUE, TranscribeJob};
use worker::runner::JobHandler;
use worker::{EngineConfig, JobError, RunConfig, Transcriber, TranscriberConfig};

use crate::download::{AUDIO_TRANSCRIPT, audio_host};
use crate::helpers::{AuthFixture, Reports, TempDir, TestQueue, closed_port, eventually, serve};

/// How the stub result endpoint answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ApiMode {
    Accept,
    /// 401 to the first request, then accept.
    UnauthorizedOnce,
    NotFound,
    AlreadyFinal,
    /// What transcription-api does: a final report (`completed`/`failed`) is stored once; an
    /// identical repeat answers 204, a differing one (including `processing` after a final
    /// report) 409.
    Stateful,
}

pub struct StubApi {
    pub addr: SocketAddr,
    pub reports: Reports,
    pub finals: Finals,
}

#[derive(Clone)]
struct StubState {
    reports: Reports,
    mode: ApiMode,
    calls: Arc<Mutex<u32>>,
    finals: Finals,
}

/// Final report per transcription id (`ApiMode::Stateful`).
pub type Finals = Arc<Mutex<HashMap<String, serde_json::Value>>>;

async fn result(
    State(state): State<StubState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::Json<serde_json::Value>,
) -> StatusCode {
    let report = body.0.clone();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    state
        .reports
        .lock()
        .unwrap()
        .push((id.clone(), auth.clone(), body.0));
    let call = {
        let mut calls = state.calls.lock().unwrap();
        *calls += 1;
        *calls
    };
    if !auth.starts_with("Bearer ") || auth.split('.').count() != 3 {
        return StatusCode::UNAUTHORIZED;
    }
    match state.mode {
        ApiMode::Accept => StatusCode::NO_CONTENT,
        ApiMode::UnauthorizedOnce if call == 1 => StatusCode::UNAUTHORIZED,
        ApiMode::UnauthorizedOnce => StatusCode::OK,
        ApiMode::NotFound => StatusCode::NOT_FOUND,
        ApiMode::AlreadyFinal => StatusCode::CONFLICT,
        ApiMode::Stateful => {
            let mut finals = state.finals.lock().unwrap();
            match finals.get(&id) {
                Some(stored) if *stored == report => StatusCode::NO_CONTENT,
                Some(_) => StatusCode::CONFLICT,
                None if report["status"] == "processing" => StatusCode::NO_CONTENT,
                None => {
                    finals.insert(id, report);
                    StatusCode::NO_CONTENT
                }
            }
        }
    }
}

impl StubApi {
    pub async fn start(mode: ApiMode) -> StubApi {
        let reports = Reports::default();
        let finals = Finals::default();
        let state = StubState {
            reports: reports.clone(),
            mode,
            calls: Arc::default(),
            finals: finals.clone(),
        };
        let router = Router::new()
            .route("/internal/transcriptions/{id}/result", put(result))
            .with_state(state);
        StubApi {
            addr: serve(router).await,
            reports,
            finals,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn reports(&self) -> Vec<(String, String, serde_json::Value)> {
        self.reports.lock().unwrap().clone()
    }

    /// The stored final reports (`ApiMode::Stateful`).
    pub fn finals(&self) -> HashMap<String, serde_json::Value> {
        self.finals.lock().unwrap().clone()
    }
}

pub fn transcriber_config(
    api_url: &str,
    auth: &AuthFixture,
    scratch: &TempDir,
) -> TranscriberConfig {
    let mut run = RunConfig::new("transcriber", TRANSCRIBE_QUEUE);
    run.reserve_wait = Duration::from_millis(200);
    run.maintenance_interval = Duration::from_millis(100);
    run.shutdown_grace = Duration::from_secs(5);
    TranscriberConfig {
        run,
        notify_queue: NOTIFY_QUEUE.into(),
        api_url: api_url.into(),
        credentials: ClientCredentials {
            token_url: format!("{}/oauth/token", auth.base),
            client_id: auth.client_id.clone(),
            client_secret: SecretString::from(auth.client_secret.clone()),
            scope: "transcriptions:report".into(),
        },
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

pub fn transcribe_job(audio_url: String) -> TranscribeJob {
    TranscribeJob {
        transcription_id: Uuid::new_v4(),
        audio_url,
        email: "listener@example.com".into(),
    }
}

fn envelope(job: &TranscribeJob) -> Envelope {
    let new = job.to_job().unwrap();
    Envelope::new(new.id.unwrap_or_else(JobId::random), new.kind, new.payload)
}

/// Takes the one notify job off the queue and returns its id and payload.
async fn take_notify(queue: &dyn ReliableQueue) -> (String, serde_json::Value) {
    queue
        .heartbeat("inspector", Duration::from_secs(30))
        .await
        .unwrap();
    let job = queue
        .reserve(NOTIFY_QUEUE, "inspector", Duration::ZERO)
        .await
        .unwrap()
        .expect("a notify job");
    assert_eq!(job.envelope.kind, "notify");
    (job.envelope.id.to_string(), job.envelope.payload.clone())
}

fn statuses(reports: &[(String, String, serde_json::Value)]) -> Vec<String> {
    reports
        .iter()
        .map(|(_, _, body)| body["status"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn transcribes_reports_with_a_cached_token_and_enqueues_notify() {
    let auth = AuthFixture::start().await;
    let api = StubApi::start(ApiMode::Accept).await;
    let host = audio_host().await;
    let queue = TestQueue::sqlite().await;
    let scratch = TempDir::new("scratch");
    let job = transcribe_job(format!("http://{host}/audio"));
    queue
        .queue
        .enqueue_job(TRANSCRIBE_QUEUE, job.to_job().unwrap())
        .await
        .unwrap();

    let transcriber = Transcriber::new(
        transcriber_config(&api.url(), &auth, &scratch),
        queue.queue.clone(),
    )
    .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(transcriber.run(async {
        let _ = rx.await;
    }));
    let q = queue.queue.clone();
    let done = eventually(Duration::from_secs(10), || {
        let q = q.clone();
        async move { q.stats(NOTIFY_QUEUE).await.unwrap().ready == 1 }
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();
    assert!(done, "no notify job; summary {summary:?}");
    assert_eq!(summary.succeeded, 1);

    let reports = api.reports();
    assert_eq!(statuses(&reports), ["processing", "completed"]);
    let expected = AUDIO_TRANSCRIPT.to_owned();
    assert_eq!(reports[1].2["transcript"], expected.as_str());
    assert!(
        reports
            .iter()
            .all(|(id, _, _)| *id == job.transcription_id.to_string())
    );
    assert_eq!(
        reports[0].1, reports[1].1,
        "the token is cached between calls"
    );

    let stats = queue.queue.stats(TRANSCRIBE_QUEUE).await.unwrap();
    assert_eq!(
        stats,
        job_queue::QueueStats::default(),
        "the transcribe job was acked"
    );
    let (id, payload) = take_notify(queue.queue.as_ref()).await;
    assert_eq!(id, format!("notify-{}", job.transcription_id));
    assert_eq!(
        payload,
        serde_json::json!({"transcription_id": job.transcription_id, "email": "listener@example.com",
                           "transcript": expected, "status": "completed"})
    );
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "audio removed"
    );
}

#[tokio::test]
async fn unreachable_result_api_makes_the_job_retry_with_backoff() {
    let auth = AuthFixture::start().await;
    let host = audio_host().await;
    let queue = TestQueue::sqlite().await;
    let scratch = TempDir::new("scratch");
    let api = format!("http://{}", closed_port().await);
    let job = transcribe_job(format!("http://{host}/audio"));
    queue
        .queue
        .enqueue_job(TRANSCRIBE_QUEUE, job.to_job().unwrap())
        .await
        .unwrap();

    let mut config = transcriber_config(&api, &auth, &scratch);
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
        async move { q.stats(TRANSCRIBE_QUEUE).await.unwrap().delayed == 1 }
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();
    assert!(delayed, "job not delayed; summary {summary:?}");
    assert_eq!(summary.failed, 1);
    assert_eq!(summary.succeeded, 0);
    assert_eq!(queue.queue.stats(NOTIFY_QUEUE).await.unwrap().ready, 0);
    assert!(queue.queue.dead(TRANSCRIBE_QUEUE).await.unwrap().is_empty());
}

#[tokio::test]
async fn audio_that_cannot_be_fetched_is_reported_failed_and_notified() {
    let auth = AuthFixture::start().await;
    let api = StubApi::start(ApiMode::Accept).await;
    let host = audio_host().await;
    let queue = TestQueue::sqlite().await;
    let scratch = TempDir::new("scratch");
    let transcriber = Transcriber::new(
        transcriber_config(&api.url(), &auth, &scratch),
        queue.queue.clone(),
    )
    .unwrap();
    let job = transcribe_job(format!("http://{host}/status/404"));

    transcriber.handler().handle(&envelope(&job)).await.unwrap();

    let reports = api.reports();
    assert_eq!(statuses(&reports), ["processing", "failed"]);
    // The owner is told the class of the failure, not what the audio host answered.
    assert_eq!(
        reports[1].2["error"], "the audio could not be downloaded (http_status)",
        "{reports:?}"
    );
    let (_, payload) = take_notify(queue.queue.as_ref()).await;
    assert_eq!(payload["status"], "failed");
    assert_eq!(payload["transcript"], "");
}

#[tokio::test]
async fn private_audio_urls_are_refused_by_default() {
    let auth = AuthFixture::start().await;
    let api = StubApi::start(ApiMode::Accept).await;
    let host = audio_host().await;
    let queue = TestQueue::sqlite().await;
    let scratch = TempDir::new("scratch");
    let mut config = transcriber_config(&api.url(), &auth, &scratch);
    config.download.allow_private = false;
    let transcriber = Transcriber::new(config, queue.queue.clone()).unwrap();
    let job = transcribe_job(format!("http://{host}/audio"));

    transcriber.handler().handle(&envelope(&job)).await.unwrap();

    let reports = api.reports();
    assert_eq!(statuses(&reports), ["processing", "failed"]);
    // One generic text and the class: no host, address or port of the refused target.
    assert_eq!(
        reports[1].2["error"], "the audio could not be downloaded (refused_address)",
        "{reports:?}"
    );
}

#[tokio::test]
async fn a_401_drops_the_cached_token_and_retries_once() {
    let auth = AuthFixture::start().await;
    let api = StubApi::start(ApiMode::UnauthorizedOnce).await;
    let host = audio_host().await;
    let queue = TestQueue::sqlite().await;
    let scratch = TempDir::new("scratch");
    let transcriber = Transcriber::new(
        transcriber_config(&api.url(), &auth, &scratch),
        queue.queue.clone(),
    )
    .unwrap();
    let job = transcribe_job(format!("http://{host}/audio"));

    transcriber.handler().handle(&envelope(&job)).await.unwrap();

    let reports = api.reports();
    assert_eq!(
        statuses(&reports),
        ["processing", "processing", "completed"]
    );
    assert_ne!(reports[0].1, reports[1].1, "a fresh token after the 401");
    assert_eq!(reports[1].1, reports[2].1);
}

#[tokio::test]
async fn a_job_without_a_record_is_acknowledged_as_obsolete_not_dead_lettered() {
    let auth = AuthFixture::start().await;
    let api = StubApi::start(ApiMode::NotFound).await;
    let queue = TestQueue::sqlite().await;
    let scratch = TempDir::new("scratch");
    let transcriber = Transcriber::new(
        transcriber_config(&api.url(), &auth, &scratch),
        queue.queue.clone(),
    )
    .unwrap();
    let job = transcribe_job("http://203.0.113.1/never-fetched".into());

    transcriber
        .handler()
        .handle(&envelope(&job))
        .await
        .expect("an obsolete job is acknowledged");
    assert_eq!(
        statuses(&api.reports()),
        ["processing"],
        "nothing is reported after the 404"
    );
    assert_eq!(queue.queue.stats(NOTIFY_QUEUE).await.unwrap().ready, 0);
}

#[tokio::test]
async fn already_final_counts_as_success_and_still_notifies_once() {
    let auth = AuthFixture::start().await;
    let api = StubApi::start(ApiMode::AlreadyFinal).await;
    let host = audio_host().await;
    let queue = TestQueue::sqlite().await;
    let scratch = TempDir::new("scratch");
    let transcriber = Transcriber::new(
        transcriber_config(&api.url(), &auth, &scratch),
        queue.queue.clone(),
    )
    .unwrap();
    let job = transcribe_job(format!("http://{host}/audio"));

    transcriber.handler().handle(&envelope(&job)).await.unwrap();
    transcriber.handler().handle(&envelope(&job)).await.unwrap();

    assert_eq!(
        queue.queue.stats(NOTIFY_QUEUE).await.unwrap().ready,
        1,
        "the second notify-<id> is deduplicated by the queue"
    );
}

#[tokio::test]
async fn wrong_client_secret_is_a_transient_failure() {
    let auth = AuthFixture::start().await;
    let api = StubApi::start(ApiMode::Accept).await;
    let queue = TestQueue::sqlite().await;
    let scratch = TempDir::new("scratch");
    let mut config = transcriber_config(&api.url(), &auth, &scratch);
    config.credentials.client_secret = SecretString::from("wrong".to_owned());
    let transcriber = Transcriber::new(config, queue.queue.clone()).unwrap();
    let job = transcribe_job("http://203.0.113.1/a".into());

    let err = transcriber
        .handler()
        .handle(&envelope(&job))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, JobError::Transient(m) if m.contains("token endpoint")),
        "{err:?}"
    );
    assert!(api.reports().is_empty());
}
