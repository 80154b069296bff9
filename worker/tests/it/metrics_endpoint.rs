//! `worker notifier --metrics-bind`: the Prometheus endpoint of a real worker process, scraped
//! after it processed jobs, and `/healthz`.

use std::collections::BTreeSet;
use std::time::Duration;

use auth_server::testing::process::{ServiceProcess, Signal};

use job_queue::{NewJob, ReliableQueue, SqliteQueue};
use uuid::Uuid;
use worker::jobs::{NOTIFY_KIND, NOTIFY_QUEUE, NotifyJob, NotifyStatus};

use crate::helpers::{SIGNING_KEY, TempDir, WorkerProcess, eventually, queue_config, signing_key};

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
    let url = format!("sqlite:{}", dir.path().join("queue.db").display());
    let queue = SqliteQueue::connect(&url, signing_key(), queue_config())
        .await
        .unwrap();
    queue.migrate().await.unwrap();
    let good = NotifyJob {
        transcription_id: Uuid::new_v4(),
        email: "listener@example.com".into(),
        transcript: "scraped".into(),
        status: NotifyStatus::Completed,
    };
    queue
        .enqueue_job(NOTIFY_QUEUE, good.to_job().unwrap())
        .await
        .unwrap();
    // Fails permanently (bad payload): dead at once, never retried (QUEUE_MAX_ATTEMPTS=2 does
    // not apply to a permanent failure).
    queue
        .enqueue_job(
            NOTIFY_QUEUE,
            NewJob::new(NOTIFY_KIND, serde_json::json!({"not": "a notify job"})),
        )
        .await
        .unwrap();

    let outbox = dir.path().join("outbox");
    let notifier = WorkerProcess::spawn(
        &["notifier", "--metrics-bind", "127.0.0.1:0"],
        &[
            ("QUEUE_DATABASE_URL", url.clone()),
            ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
            ("QUEUE_MAX_ATTEMPTS", "2".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
            ("OUTBOX_DIR", outbox.display().to_string()),
        ],
        dir.path().join("notifier.log"),
    );
    let mut addr = None;
    let listening = eventually(Duration::from_secs(20), || {
        addr = logged_metrics_addr(&notifier.log());
        std::future::ready(addr.is_some())
    })
    .await;
    assert!(listening, "no metrics endpoint:\n{}", notifier.log());
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
            notifier.log()
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
