//! Deadlines (issue 12, kind 5): every external call of a job and every job as a whole ends in
//! bounded time against a real stalled TCP server (accepts the connection, then never answers,
//! or stops in the middle of the body), and a job whose handler never returns is cancelled at
//! `job_timeout`, retried with back-off, and does not hold up the jobs behind it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::routing::post;
use contracts::report::ResultReport;
use job_queue::{Envelope, Job, ReliableQueue};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;
use worker::api::{ClientCredentials, ReportError, TokenSource, TranscriptionApi};
use worker::download::{AudioDownloader, DownloadError, DownloadLimits};
use worker::{JobError, JobHandler, RunConfig, WorkerLoop};

use crate::helpers::{RedisTestQueue, TempDir, TestQueue, eventually, serve};

/// The deadline the clients under test get.
const DEADLINE: Duration = Duration::from_millis(500);
/// Far above [`DEADLINE`]: a call still running then has no deadline at all.
const NEVER: Duration = Duration::from_secs(20);

/// A real TCP server that accepts every connection, reads the request, writes `prefix` (maybe
/// nothing) and then neither writes nor closes while the test runs.
pub async fn stalled_server(prefix: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(prefix).await;
                let _ = socket.flush().await;
                std::future::pending::<()>().await;
                drop(socket);
            });
        }
    });
    addr
}

/// Headers of a 200 response announcing more body than is ever sent.
const HALF_BODY: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"access_to";

fn credentials(token_url: String) -> ClientCredentials {
    ClientCredentials {
        token_url,
        client_id: "worker".into(),
        client_secret: SecretString::from("worker-secret".to_owned()),
        scope: "transcriptions:report".into(),
    }
}

fn tokens(token_url: String) -> TokenSource {
    TokenSource::new(reqwest::Client::new(), credentials(token_url)).with_timeout(DEADLINE)
}

#[tokio::test]
async fn token_fetch_from_a_silent_server_times_out_as_unavailable() {
    for prefix in [&b""[..], HALF_BODY] {
        let addr = stalled_server(prefix).await;
        let source = tokens(format!("http://{addr}/oauth/token"));
        let outcome = tokio::time::timeout(NEVER, source.token())
            .await
            .expect("the token fetch has a deadline");
        let err = outcome.unwrap_err();
        assert!(matches!(err, ReportError::Unavailable(_)), "{err:?}");
        assert!(!err.is_permanent());
    }
}

#[tokio::test]
async fn report_to_a_silent_api_times_out_as_unavailable() {
    // A stand-in token endpoint: only the API's silence is under test here.
    let auth = serve(Router::new().route(
        "/oauth/token",
        post(|| async { axum::Json(serde_json::json!({"access_token": "t", "expires_in": 300})) }),
    ))
    .await;
    for prefix in [&b""[..], b"HTTP/1.1 204 No"] {
        let api_addr = stalled_server(prefix).await;
        let api = TranscriptionApi::new(
            reqwest::Client::new(),
            &format!("http://{api_addr}"),
            Arc::new(tokens(format!("http://{auth}/oauth/token"))),
        )
        .with_timeout(DEADLINE);
        let outcome =
            tokio::time::timeout(NEVER, api.report(Uuid::new_v4(), &ResultReport::Processing))
                .await
                .expect("the report has a deadline");
        let err = outcome.unwrap_err();
        assert!(matches!(err, ReportError::Unavailable(_)), "{err:?}");
    }
}

#[tokio::test]
async fn download_from_a_server_that_stalls_times_out() {
    let downloader = AudioDownloader::new(DownloadLimits {
        timeout: DEADLINE,
        allow_private: true,
        ..DownloadLimits::default()
    });
    let mid_body: &'static [u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: 100000\r\n\r\nRIFF....WAVE";
    for prefix in [&b""[..], mid_body] {
        let addr = stalled_server(prefix).await;
        let dir = TempDir::new("stalled-download");
        let outcome = tokio::time::timeout(
            NEVER,
            downloader.fetch_to(&format!("http://{addr}/audio.wav"), &dir.path().join("a")),
        )
        .await
        .expect("the download has a deadline");
        let err = outcome.unwrap_err();
        assert!(matches!(err, DownloadError::Timeout(_)), "{err:?}");
        assert!(!err.is_permanent());
    }
}

/// A `test` job: `{"hang": true}`, or anything else (`{"n": …}`) for one that completes.
#[derive(Serialize, Deserialize)]
struct TestJob {
    #[serde(default)]
    hang: bool,
}

impl Job for TestJob {
    const JOB_NAME: &'static str = "test";
    const QUEUE: &'static str = "deadline";
}

/// Never returns for jobs whose payload says `hang`; completes the others at once.
#[derive(Default)]
struct HangingHandler {
    hung: AtomicU32,
    done: AtomicU32,
    dead: AtomicU32,
}

#[async_trait]
impl JobHandler for HangingHandler {
    type Job = TestJob;

    async fn perform(&self, job: TestJob, _envelope: &Envelope) -> Result<(), JobError> {
        if job.hang {
            self.hung.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn on_dead(&self, _job: TestJob, _envelope: &Envelope, _error: &JobError) {
        self.dead.fetch_add(1, Ordering::SeqCst);
    }
}

async fn a_job_that_never_returns_is_cancelled_retried_and_does_not_block_others(
    queue: Arc<dyn ReliableQueue>,
) {
    const QUEUE: &str = "deadline";
    queue
        .enqueue(QUEUE, "test", serde_json::json!({ "hang": true }))
        .await
        .unwrap();
    for n in 0..3 {
        queue
            .enqueue(QUEUE, "test", serde_json::json!({ "n": n }))
            .await
            .unwrap();
    }
    let handler = Arc::new(HangingHandler::default());
    let mut config = RunConfig::new("deadline", QUEUE);
    config.concurrency = 1;
    config.job_timeout = Duration::from_millis(300);
    config.reserve_wait = Duration::from_millis(100);
    config.maintenance_interval = Duration::from_millis(50);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(WorkerLoop::new(queue.clone(), handler.clone(), config).run(
        async {
            let _ = rx.await;
        },
    ));

    // One slot: the jobs behind the hung one can only run because its deadline freed it.
    let h = handler.clone();
    let others_done = eventually(Duration::from_secs(10), || {
        let h = h.clone();
        async move { h.done.load(Ordering::SeqCst) == 3 }
    })
    .await;
    let h = handler.clone();
    let died = eventually(Duration::from_secs(15), || {
        let h = h.clone();
        async move { h.dead.load(Ordering::SeqCst) == 1 }
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();
    assert!(others_done, "{summary:?}");
    assert!(died, "{summary:?}");
    assert_eq!(summary.succeeded, 3);
    assert_eq!(summary.failed, 3, "each timed-out delivery is a failure");
    assert_eq!(
        handler.hung.load(Ordering::SeqCst),
        3,
        "retried up to max_attempts"
    );
    let dead = queue.dead(QUEUE).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].reason.contains("timed out"), "{:?}", dead[0]);
    let stats = queue.stats(QUEUE).await.unwrap();
    assert_eq!((stats.ready, stats.processing, stats.delayed), (0, 0, 0));
}

#[tokio::test]
async fn a_job_that_never_returns_is_cancelled_and_retried_on_sqlite() {
    let queue = TestQueue::sqlite().await;
    a_job_that_never_returns_is_cancelled_retried_and_does_not_block_others(queue.queue.clone())
        .await;
}

#[tokio::test]
async fn a_job_that_never_returns_is_cancelled_and_retried_on_redis() {
    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    a_job_that_never_returns_is_cancelled_retried_and_does_not_block_others(redis.queue.clone())
        .await;
}

/// What the engine child sleeps: long enough to outlive any test, and a command line that
/// names this test's children alone in `/proc/<pid>/cmdline`.
const ENGINE_SLEEP_SECS: u32 = 3599;

/// Whether `pid` is still one of this test's sleeping engine children. A killed child that is
/// not reaped yet is a zombie, whose `cmdline` is empty; a reused pid runs something else.
fn engine_child_runs(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline == format!("sleep\0{ENGINE_SLEEP_SECS}\0").as_bytes())
}

/// README, Fault tolerance: a job still running at `JOB_TIMEOUT_SECS` is cancelled, "a command
/// engine's child is killed", and the job fails like any transient error: retried with
/// back-off, dead after `QUEUE_MAX_ATTEMPTS`, the owner told it could not be completed. A
/// `worker transcriber` process with the command engine on the real platform; the child
/// writes its pid and sleeps for an hour, and `ENGINE_TIMEOUT_SECS` is an hour too, so only
/// the job's deadline (4 s) can end it. Every child is gone once the job is dead.
#[tokio::test]
async fn a_job_timeout_kills_the_command_engines_child() {
    use contracts::jobs::TranscribeJob;
    use job_queue::Job;
    use test_support::process::ServiceProcess;

    use crate::download::audio_host;
    use crate::helpers::{SIGNING_KEY, queue_config, sqlite_queue_in};
    use crate::platform::TestPlatform;

    let dir = TempDir::new("job-timeout-engine");
    let (url, queue) = sqlite_queue_in(&dir, queue_config()).await;
    let queue: Arc<dyn ReliableQueue> = Arc::new(queue);
    let platform = TestPlatform::start(queue.clone()).await;
    let audio_url = format!("http://{}/audio", audio_host().await);
    let id = platform.submit("owner@example.com", &audio_url).await;
    // `sh -c SCRIPT PIDS AUDIO`: one line per delivery that reached the engine; `exec` makes
    // the sleeping process the engine's child itself.
    let pids = dir.path().join("engine-pids");
    let engine = format!(
        "sh -c 'echo $$ >> \"$0\"; exec sleep {ENGINE_SLEEP_SECS}' {}",
        pids.display()
    );

    let transcriber = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["transcriber"],
        &[
            ("QUEUE_DATABASE_URL", url.clone()),
            ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
            ("QUEUE_MAX_ATTEMPTS", "2".to_owned()),
            ("JOB_TIMEOUT_SECS", "4".to_owned()),
            ("TRANSCRIBE_ENGINE", "command".to_owned()),
            ("ENGINE_COMMAND", engine),
            ("ENGINE_TIMEOUT_SECS", "3600".to_owned()),
            ("TRANSCRIPTION_API_URL", platform.api_url.clone()),
            ("AUTH_URL", platform.auth.base.clone()),
            ("WORKER_CLIENT_ID", platform.worker_client.0.clone()),
            ("WORKER_CLIENT_SECRET", platform.worker_client.1.clone()),
            ("ALLOW_PRIVATE_URLS", "true".to_owned()),
            (
                "SCRATCH_DIR",
                dir.path().join("scratch").display().to_string(),
            ),
            ("LOG_FORMAT", "json".to_owned()),
        ],
        &dir.path().join("logs"),
    );

    let platform = &platform;
    let failed = eventually(Duration::from_secs(90), || async move {
        platform.status(id).await == "failed"
    })
    .await;
    assert!(
        failed,
        "{}\n{}",
        platform.transcription(id).await,
        transcriber.output()
    );
    let children: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap_or_default()
        .lines()
        .map(|pid| pid.parse().unwrap())
        .collect();
    assert!(
        (1..=2).contains(&children.len()),
        "one engine child per delivery that reached the engine: {children:?}\n{}",
        transcriber.output()
    );
    eprintln!("engine children, one per delivery that reached the engine: {children:?}");
    let all_gone = eventually(Duration::from_secs(30), || {
        std::future::ready(!children.iter().any(|pid| engine_child_runs(*pid)))
    })
    .await;
    let survivors: Vec<u32> = children
        .iter()
        .copied()
        .filter(|pid| engine_child_runs(*pid))
        .collect();
    for pid in &survivors {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    assert!(
        all_gone,
        "engine children still running after their job was cancelled: {survivors:?}"
    );

    let record = platform.transcription(id).await;
    assert_eq!(
        record["error"],
        "gave up after repeated failures: the transcription could not be completed (timeout)",
        "{record}"
    );
    let dead = queue.dead(TranscribeJob::QUEUE).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].attempt, 2, "{:?}", dead[0]);
    assert_eq!(
        dead[0].reason,
        "failed 2 times; last error: job timed out after 4 s (JOB_TIMEOUT_SECS)"
    );
}
