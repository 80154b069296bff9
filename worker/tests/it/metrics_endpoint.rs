//! `worker notifier|transcriber --metrics-bind`: the Prometheus endpoint of a real worker
//! process, scraped after it processed jobs (succeeded, failed, dead, timed out, enqueued), and
//! `/healthz`, also while the queue backend does not answer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use test_support::net::TcpProxy;
use test_support::process::{ServiceProcess, Signal};

use contracts::jobs::{NotifyJob, NotifyStatus};
use job_queue::{Job, NewJob, ReliableQueue};
use uuid::Uuid;

use crate::deadlines::stalled_server;
use crate::download::audio_host;
use crate::helpers::{
    RedisTestQueue, SIGNING_KEY, TempDir, eventually, queue_config, sqlite_queue_in,
};
use crate::platform::TestPlatform;

/// The address the process logged for its metrics endpoint (JSON logs).
fn logged_metrics_addr(log: &str) -> Option<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["fields"]["message"] == "metrics endpoint listening")
        .and_then(|line| line["fields"]["addr"].as_str().map(str::to_owned))
}

/// The value of the sample `name{labels}` (labels exactly as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn notifier_serves_job_counters_latency_histogram_and_queue_depth() {
    let dir = TempDir::new("metrics");
    let (url, queue) = sqlite_queue_in(&dir, queue_config()).await;
    let good = NotifyJob {
        transcription_id: Uuid::new_v4(),
        email: "listener@example.com".into(),
        transcript: "scraped".into(),
        status: NotifyStatus::Completed,
    };
    queue
        .enqueue_job(NotifyJob::QUEUE, good.to_job().unwrap())
        .await
        .unwrap();
    // Fails permanently (bad payload): dead at once, never retried (QUEUE_MAX_ATTEMPTS=2 does
    // not apply to a permanent failure).
    queue
        .enqueue_job(
            NotifyJob::QUEUE,
            NewJob::new(
                NotifyJob::JOB_NAME,
                serde_json::json!({"not": "a notify job"}),
            ),
        )
        .await
        .unwrap();

    let outbox = dir.path().join("outbox");
    let notifier = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["notifier", "--metrics-bind", "127.0.0.1:0"],
        &[
            ("QUEUE_DATABASE_URL", url.clone()),
            ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
            ("QUEUE_MAX_ATTEMPTS", "2".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
            ("OUTBOX_DIR", outbox.display().to_string()),
        ],
        dir.path(),
    );
    let mut addr = None;
    let listening = eventually(Duration::from_secs(20), || {
        addr = logged_metrics_addr(&notifier.stderr());
        std::future::ready(addr.is_some())
    })
    .await;
    assert!(listening, "no metrics endpoint:\n{}", notifier.stderr());
    let base = format!("http://{}", addr.unwrap());
    let http = reqwest::Client::new();

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");

    // Scrape until the maintenance loop has seen the dead job (its gauge lags by up to one
    // maintenance interval, 2 s).
    let labels = r#"queue="notify",kind="notify""#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let response = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = response.text().await.unwrap();
        let dead = sample(&text, r#"worker_queue_depth{queue="notify",state="dead"}"#);
        let ready = sample(&text, r#"worker_queue_depth{queue="notify",state="ready"}"#);
        if dead == Some(1.0) && ready == Some(0.0) {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue depth never showed the dead job:\n{text}\n--- log\n{}",
            notifier.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        outbox
            .join(format!("{}.eml", good.transcription_id))
            .exists()
    );

    let counter = |name: &str| sample(&text, &format!("{name}{{{labels}}}"));
    assert_eq!(counter("worker_jobs_succeeded_total"), Some(1.0), "{text}");
    assert_eq!(counter("worker_jobs_failed_total"), Some(1.0), "{text}");
    assert_eq!(
        counter("worker_jobs_retried_total"),
        None,
        "a permanent failure is not retried: {text}"
    );
    assert_eq!(counter("worker_jobs_dead_total"), Some(1.0), "{text}");
    assert_eq!(
        counter("worker_job_processing_seconds_count"),
        Some(2.0),
        "two deliveries timed: {text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("worker_job_processing_seconds_bucket{{{labels},le=\"+Inf\"}}")
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE worker_job_processing_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("# HELP worker_jobs_succeeded_total Jobs handled and acknowledged"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"worker_queue_depth{queue="notify",state="processing"}"#
        ),
        Some(0.0)
    );

    let missing = http.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

/// Without `--metrics-bind` a running worker listens on no TCP port at all (its sockets read
/// from `/proc`); with it, the same check finds the logged metrics port, so the check sees
/// listeners when there are some.
#[tokio::test]
async fn metrics_are_off_by_default() {
    let dir = TempDir::new("metrics-off");
    let env = [
        (
            "QUEUE_DATABASE_URL",
            format!("sqlite:{}", dir.path().join("queue.db").display()),
        ),
        ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
        (
            "OUTBOX_DIR",
            dir.path().join("outbox").display().to_string(),
        ),
        ("LOG_FORMAT", "json".to_owned()),
    ];
    let logs = dir.path().join("logs");

    let mut plain = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["notifier"],
        &env,
        &logs.join("plain"),
    );
    plain.wait_for_event("worker started").await;
    assert_eq!(
        plain.listening_ports(),
        BTreeSet::new(),
        "no listener without --metrics-bind\n{}",
        plain.output()
    );
    plain.stop_cleanly(Signal::Term).await;

    let mut with_metrics = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["notifier", "--metrics-bind", "127.0.0.1:0"],
        &env,
        &logs.join("with-metrics"),
    );
    let addr = with_metrics
        .wait_for_addr("metrics endpoint listening")
        .await;
    with_metrics.wait_for_event("worker started").await;
    assert_eq!(
        with_metrics.listening_ports(),
        BTreeSet::from([addr.port()]),
        "{}",
        with_metrics.output()
    );
    with_metrics.stop_cleanly(Signal::Term).await;
}

/// `install_prometheus` is idempotent: the same recorder, so both handles render what either
/// process-wide recording produced.
#[test]
fn install_prometheus_returns_the_same_handle_every_time() {
    let first = worker::telemetry::install_prometheus().unwrap();
    let second = worker::telemetry::install_prometheus().unwrap();
    let marker = format!("test_marker_{}", Uuid::new_v4().simple());
    metrics::counter!(marker.clone()).increment(1);
    assert!(first.render().contains(&marker));
    assert!(second.render().contains(&marker));
}

/// Scrapes `base/metrics` until `done` holds for the text (up to 60 s); returns that text.
async fn scrape_until(
    base: &str,
    worker: &mut ServiceProcess,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline && worker.exit_status().is_none(),
            "{what} never showed:\n{text}\n{}",
            worker.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// README, worker Metrics: `/healthz` answers 503 when the queue backend does not answer a
/// ping within 2 s. A `worker notifier` on Redis through a proxy the test stalls: the
/// connection stays open, the ping goes out, no answer comes back. The body tells which
/// deadline answered: `queue timed out` is the health check's own (2 s), not the Redis
/// client's response timeout (5 s, which would answer `queue unreachable`). Once the proxy
/// forwards again the endpoint is healthy again.
#[tokio::test]
async fn healthz_answers_503_while_the_queue_backend_does_not_answer() {
    assert_eq!(worker::telemetry::HEALTH_TIMEOUT, Duration::from_secs(2));
    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    let (proxy, proxied_url) = TcpProxy::in_front_of(&redis.url)
        .await
        .expect("a redis:// URL");
    let dir = TempDir::new("healthz-stalled");
    let mut notifier = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["notifier", "--metrics-bind", "127.0.0.1:0"],
        &[
            ("REDIS_URL", proxied_url),
            ("QUEUE_PREFIX", redis.prefix.clone()),
            ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
            (
                "OUTBOX_DIR",
                dir.path().join("outbox").display().to_string(),
            ),
            ("LOG_FORMAT", "json".to_owned()),
        ],
        &dir.path().join("logs"),
    );
    let addr = notifier.wait_for_addr("metrics endpoint listening").await;
    notifier.wait_for_event("worker started").await;
    notifier.wait_healthy(addr).await;

    proxy.stall();
    // Far longer than any deadline under test: only the worker's answer ends the request.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let answer = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body = answer.text().await.unwrap();
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (503, "queue timed out\n"),
        "{}",
        notifier.output()
    );

    proxy.resume();
    notifier.wait_healthy(addr).await;
}

/// README, worker Metrics (and Fault tolerance, "Every job has a deadline"): a job cancelled at
/// `JOB_TIMEOUT_SECS` counts `worker_jobs_timed_out_total{queue,kind}`, and as a failed
/// delivery `worker_jobs_failed_total`, then retried or dead. The mail server accepts the
/// connection and never greets; `SMTP_TIMEOUT_SECS` is an hour, so only the job's 1 s deadline
/// ends each of the two deliveries (`QUEUE_MAX_ATTEMPTS=2`).
#[tokio::test]
async fn notifier_counts_jobs_cancelled_at_the_job_timeout() {
    let dir = TempDir::new("metrics-timeout");
    let (url, queue) = sqlite_queue_in(&dir, queue_config()).await;
    let job = NotifyJob {
        transcription_id: Uuid::new_v4(),
        email: "listener@example.com".into(),
        transcript: "never sent".into(),
        status: NotifyStatus::Completed,
    };
    queue
        .enqueue_job(NotifyJob::QUEUE, job.to_job().unwrap())
        .await
        .unwrap();
    let silent_smtp = stalled_server(b"").await;

    let mut notifier = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["notifier", "--metrics-bind", "127.0.0.1:0"],
        &[
            ("QUEUE_DATABASE_URL", url.clone()),
            ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
            ("QUEUE_MAX_ATTEMPTS", "2".to_owned()),
            ("JOB_TIMEOUT_SECS", "1".to_owned()),
            ("SMTP_URL", format!("smtp://{silent_smtp}?tls=none")),
            ("SMTP_TIMEOUT_SECS", "3600".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
        ],
        &dir.path().join("logs"),
    );
    let addr = notifier.wait_for_addr("metrics endpoint listening").await;
    let base = format!("http://{addr}");
    let labels = r#"queue="notify",kind="notify""#;
    let counter = |text: &str, name: &str| sample(text, &format!("{name}{{{labels}}}"));
    let text = scrape_until(&base, &mut notifier, "the dead job", |text| {
        counter(text, "worker_jobs_dead_total") == Some(1.0)
    })
    .await;

    assert_eq!(
        counter(&text, "worker_jobs_timed_out_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        counter(&text, "worker_jobs_failed_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        counter(&text, "worker_jobs_retried_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        counter(&text, "worker_jobs_succeeded_total"),
        None,
        "{text}"
    );
    assert!(
        text.contains(
            "# HELP worker_jobs_timed_out_total Jobs cancelled at their JOB_TIMEOUT_SECS deadline"
        ),
        "{text}"
    );
    let dead = queue.dead(NotifyJob::QUEUE).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead[0].reason,
        "failed 2 times; last error: job timed out after 1 s (JOB_TIMEOUT_SECS)"
    );
}

/// README, worker Metrics: `worker_jobs_enqueued_total{queue}` counts the notify jobs the
/// transcriber enqueued. Two transcriptions submitted to the real transcription-api, done by
/// a `worker transcriber` process: two notify jobs on `notify`, and the counter says 2.
#[tokio::test]
async fn transcriber_counts_the_notify_jobs_it_enqueues() {
    let dir = TempDir::new("metrics-enqueued");
    let (url, queue) = sqlite_queue_in(&dir, queue_config()).await;
    let queue: Arc<dyn ReliableQueue> = Arc::new(queue);
    let platform = TestPlatform::start(queue.clone()).await;
    let audio_url = format!("http://{}/audio", audio_host().await);
    let ids = [
        platform.submit("first@example.com", &audio_url).await,
        platform.submit("second@example.com", &audio_url).await,
    ];

    let mut transcriber = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["transcriber", "--metrics-bind", "127.0.0.1:0"],
        &[
            ("QUEUE_DATABASE_URL", url.clone()),
            ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
            ("TRANSCRIPTION_API_URL", platform.api_url.clone()),
            ("AUTH_URL", platform.auth.base.clone()),
            ("WORKER_CLIENT_ID", platform.worker_client.0.clone()),
            ("WORKER_CLIENT_SECRET", platform.worker_client.1.clone()),
            ("ALLOW_PRIVATE_URLS", "true".to_owned()),
            ("TRANSCRIBE_DELAY_MS", "0".to_owned()),
            (
                "SCRATCH_DIR",
                dir.path().join("scratch").display().to_string(),
            ),
            ("LOG_FORMAT", "json".to_owned()),
        ],
        &dir.path().join("logs"),
    );
    let addr = transcriber
        .wait_for_addr("metrics endpoint listening")
        .await;
    let base = format!("http://{addr}");
    // Both jobs acked: each enqueued its notify job before its ack.
    let text = scrape_until(&base, &mut transcriber, "two succeeded jobs", |text| {
        sample(
            text,
            r#"worker_jobs_succeeded_total{queue="transcribe",kind="transcribe"}"#,
        ) == Some(2.0)
    })
    .await;

    assert_eq!(
        sample(&text, r#"worker_jobs_enqueued_total{queue="notify"}"#),
        Some(2.0),
        "{text}"
    );
    assert!(
        text.contains("# HELP worker_jobs_enqueued_total Jobs enqueued by this process"),
        "{text}"
    );
    assert_eq!(queue.stats(NotifyJob::QUEUE).await.unwrap().ready, 2);
    for id in ids {
        assert_eq!(platform.status(id).await, "completed");
    }
}
