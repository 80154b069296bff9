//! Fault test with real processes: a `worker transcriber` is SIGKILLed in the middle of a
//! batch, a second one takes over, and every user still gets exactly one e-mail.
//!
//! Set-up: the real platform in-process (see [`crate::platform`]): the auth server, which
//! issues the worker processes their `transcriptions:report` tokens, and transcription-api,
//! which verifies them against its JWKS and stores the reports; on Redis the API's database is
//! PostgreSQL (the production pair), on the embedded queue a SQLite file. N records are
//! submitted through `POST /transcriptions`, which queues their `transcribe` jobs (Redis under
//! a random prefix, or a SQLite file shared by the processes). A local audio host and the SMTP
//! sink complete the picture.
//!
//! 1. Worker A (`worker transcriber`, 2 slots, 150 ms simulated engine, 3 s heartbeat TTL)
//!    starts. Once some, but not all, transcriptions are `completed` in the API *and* A holds
//!    jobs in its processing list, A gets SIGKILL: no shutdown path runs, its in-flight jobs
//!    stay in its processing list and its heartbeat key simply expires.
//! 2. Worker B (another transcriber) and a `worker notifier` (SMTP to the sink, reporting the
//!    notification state to the API) start. B's maintenance loop reaps A's jobs once A's
//!    heartbeat has expired.
//! 3. The test waits until the API shows every transcription final and both queues are empty
//!    (ready, processing, delayed and dead all zero). That is the end of all work, not a
//!    time-out: a transcribe job is acked only after its notify job was enqueued, and a notify
//!    job only after the mail was accepted, so with both queues empty no further mail can be
//!    sent.
//! 4. The kill lands almost always in the engine's delay, rarely between the notify enqueue
//!    and the ack. That window is replayed on purpose: a quarter of the transcribe jobs are
//!    enqueued again (same ids and payloads, as a redelivery would be) after their mails went
//!    out, and the test waits for both queues to be empty again.
//!
//! Why one e-mail per transcription although delivery is at least once: a job A was killed
//! in the middle of runs again on B. The re-run reports `processing` (the API answers 409:
//! already final, taken as success), transcribes again (deterministic engine, so the final
//! report is identical: 204, nothing changes) and enqueues `notify-<transcription_id>` again.
//! Then
//! * while the first notify job is still pending, the queue suppresses the duplicate id;
//! * once it was acked (mail sent), the id is free again and a second notify job exists; the
//!   notifier finds the sent-marker `notify-sent:<transcription_id>` that it set in the queue
//!   backend after the SMTP server accepted the first mail, before the ack, and does not send
//!   again.
//!
//! The remaining window is a notifier killed between the SMTP server's acceptance and the
//! marker write; that mail goes out twice, with the same `Message-ID: <notify-<id>@…>` so the
//! mail system can fold it. The markers live where the queue is (Redis, or the embedded
//! queue's database), so every notifier of the deployment sees them.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;

use contracts::jobs::{NotifyJob, TranscribeJob};
use job_queue::{Job, QueueStats, ReliableQueue};
use uuid::Uuid;

use crate::download::{AUDIO_TRANSCRIPT, audio_host};
use crate::helpers::{
    RedisTestQueue, SIGNING_KEY, TempDir, eventually, queue_config, sqlite_queue_in,
};
use crate::platform::TestPlatform;
use test_support::process::ServiceProcess;
use test_support::smtp::SmtpSink;

const JOBS: usize = 40;

/// The queue under test, the platform queuing on it, and the environment that points a
/// `worker` process at the queue.
struct Backend {
    queue: Arc<dyn ReliableQueue>,
    platform: TestPlatform,
    env: Vec<(&'static str, String)>,
}

async fn stats(queue: &dyn ReliableQueue, name: &str) -> QueueStats {
    queue.stats(name).await.unwrap()
}

/// How many of the submitter's records the API shows `completed`.
async fn completed(platform: &TestPlatform) -> usize {
    platform
        .transcriptions()
        .await
        .iter()
        .filter(|record| record["status"] == "completed")
        .count()
}

async fn killed_transcriber_loses_nothing_and_mails_once(backend: Backend, dir: &TempDir) {
    let queue: &dyn ReliableQueue = backend.queue.as_ref();
    let platform = &backend.platform;
    let host = audio_host().await;
    let sink = SmtpSink::start().await;
    let sink = &sink;

    // email → transcription id, every record created through the API.
    let audio_url = format!("http://{host}/audio");
    let mut submitted: Vec<(String, Uuid)> = Vec::new();
    for i in 0..JOBS {
        let email = format!("user-{i}@example.com");
        let id = platform.submit(&email, &audio_url).await;
        submitted.push((email, id));
    }
    // An enqueue that missed its 3 s in the request is finished by the API's outbox relay.
    let queued = eventually(Duration::from_secs(30), || async move {
        stats(queue, TranscribeJob::QUEUE).await.ready == JOBS as u64
    })
    .await;
    assert!(
        queued,
        "the API did not queue one job per submission: {:?}",
        stats(queue, TranscribeJob::QUEUE).await
    );

    let mut common = backend.env.clone();
    common.extend([
        ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
        ("WORKER_CONCURRENCY", "4".to_owned()),
        ("HEARTBEAT_TTL_SECS", "3".to_owned()),
        ("SHUTDOWN_GRACE_SECS", "5".to_owned()),
        // Both roles report to the real API with the worker client's own token.
        ("TRANSCRIPTION_API_URL", platform.api_url.clone()),
        ("AUTH_URL", platform.auth.base.clone()),
        ("WORKER_CLIENT_ID", platform.worker_client.0.clone()),
        ("WORKER_CLIENT_SECRET", platform.worker_client.1.clone()),
    ]);
    let mut transcriber_env = common.clone();
    transcriber_env.extend([
        ("ALLOW_PRIVATE_URLS", "true".to_owned()),
        ("TRANSCRIBE_DELAY_MS", "150".to_owned()),
        (
            "SCRATCH_DIR",
            dir.path().join("scratch").display().to_string(),
        ),
    ]);
    let mut notifier_env = common.clone();
    notifier_env.extend([
        ("SMTP_URL", format!("{}?tls=none", sink.url())),
        (
            "MAIL_FROM",
            "Transcriptions <noreply@transcribe.test>".to_owned(),
        ),
    ]);

    // 1. Worker A, killed mid-batch. Two slots: 20 rounds of 150 ms, so the kill lands
    // mid-batch even if this test is slow to notice the condition.
    let mut first_env = transcriber_env.clone();
    first_env.push(("WORKER_CONCURRENCY", "2".to_owned()));
    let mut first = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["transcriber"],
        &first_env,
        &dir.path().join("transcriber-a"),
    );
    let mid_batch = eventually(Duration::from_secs(60), || async move {
        completed(platform).await >= JOBS / 5
            && stats(queue, TranscribeJob::QUEUE).await.processing > 0
    })
    .await;
    assert!(mid_batch, "worker A made no progress:\n{}", first.stderr());
    first.kill();
    let completed_at_kill = completed(platform).await;
    let held_by_dead_worker = stats(queue, TranscribeJob::QUEUE).await.processing;
    assert_eq!(first.exit_status().and_then(|s| s.signal()), Some(9));
    assert!(
        completed_at_kill < JOBS,
        "worker A finished the whole batch before it was killed"
    );
    assert!(
        held_by_dead_worker > 0,
        "worker A held no jobs when it was killed"
    );

    // 2. Worker B and the notifier.
    let mut second = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["transcriber"],
        &transcriber_env,
        &dir.path().join("transcriber-b"),
    );
    let mut notifier = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["notifier"],
        &notifier_env,
        &dir.path().join("notifier"),
    );

    // 3. Until all work is done (see the module docs).
    let drained = eventually(Duration::from_secs(90), || async move {
        completed(platform).await == JOBS
            && stats(queue, TranscribeJob::QUEUE).await == QueueStats::default()
            && stats(queue, NotifyJob::QUEUE).await == QueueStats::default()
    })
    .await;
    assert!(
        drained,
        "work left: {} completed, transcribe {:?}, notify {:?}, {} mails\n--- A\n{}\n--- B\n{}\n--- notifier\n{}",
        completed(platform).await,
        stats(queue, TranscribeJob::QUEUE).await,
        stats(queue, NotifyJob::QUEUE).await,
        sink.received().len(),
        first.stderr(),
        second.stderr(),
        notifier.stderr()
    );
    assert_eq!(
        second.exit_status(),
        None,
        "worker B died:\n{}",
        second.stderr()
    );
    assert_eq!(notifier.exit_status(), None, "{}", notifier.stderr());
    // B's or the notifier's maintenance loop (both reap every queue) returned A's jobs.
    let survivors = format!("{}{}", second.stderr(), notifier.stderr());
    assert!(
        survivors.contains("returned jobs of"),
        "nobody reaped worker A's jobs:\n{survivors}"
    );
    let before_replay = platform.transcriptions().await;

    // 4. The crash window a kill cannot aim at: a transcriber dying after it enqueued the
    // notify job and before its ack. Its job is redelivered after the mail went out and the
    // notify job was acked, so the id is free and a second notify job is really enqueued.
    // Replayed here for a quarter of the jobs: same ids, same payloads as the API queued.
    for (email, id) in submitted.iter().take(JOBS / 4) {
        let record = platform.transcription(*id).await;
        let job = TranscribeJob {
            transcription_id: *id,
            audio_url: record["audio_url"].as_str().unwrap().to_owned(),
            email: email.clone(),
        };
        let enqueued = queue
            .enqueue_job(TranscribeJob::QUEUE, job.to_job().unwrap())
            .await
            .unwrap();
        assert!(!enqueued.duplicate, "the acked id is free again");
    }
    let replayed = eventually(Duration::from_secs(60), || async move {
        stats(queue, TranscribeJob::QUEUE).await == QueueStats::default()
            && stats(queue, NotifyJob::QUEUE).await == QueueStats::default()
    })
    .await;
    assert!(
        replayed,
        "replayed jobs not done: transcribe {:?}, notify {:?}\n--- B\n{}\n--- notifier\n{}",
        stats(queue, TranscribeJob::QUEUE).await,
        stats(queue, NotifyJob::QUEUE).await,
        second.stderr(),
        notifier.stderr()
    );

    // Every transcription completed with the one transcript the engine gives, its e-mail
    // reported sent, and the replay's reports changed nothing the API holds.
    let transcript = AUDIO_TRANSCRIPT.to_owned();
    assert_eq!(
        platform.transcriptions().await,
        before_replay,
        "the replayed jobs changed records"
    );
    for (email, id) in &submitted {
        let record = platform.transcription(*id).await;
        assert_eq!(record["status"], "completed", "{record}");
        assert_eq!(record["transcript"], transcript.as_str(), "{record}");
        assert!(record.get("error").is_none(), "{record}");
        assert_eq!(record["email"], email.as_str());
        assert_eq!(
            record["notification"],
            serde_json::json!({"status": "sent"}),
            "{record}"
        );
    }

    // Exactly one e-mail per job, to its user, about its transcription.
    let mail = sink.received();
    let mut per_recipient: HashMap<String, usize> = HashMap::new();
    for message in &mail {
        assert_eq!(message.recipients.len(), 1);
        *per_recipient
            .entry(message.recipients[0].clone())
            .or_default() += 1;
    }
    let duplicates: Vec<_> = per_recipient.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicate e-mails: {duplicates:?}");
    assert_eq!(mail.len(), JOBS, "one e-mail per job");
    for (email, id) in &submitted {
        let message = mail
            .iter()
            .find(|m| m.recipients[0] == *email)
            .unwrap_or_else(|| panic!("no e-mail to {email}"));
        assert_eq!(
            message.header("Subject").unwrap(),
            "Your transcription is ready"
        );
        assert_eq!(
            message.header("Message-ID").unwrap(),
            format!("<notify-{id}@transcribe.test>")
        );
        assert!(message.body().contains(&transcript));
    }
    // The replay really went through the notifier's second line of defence.
    assert!(
        notifier
            .stderr()
            .contains("message was sent before; not sending again"),
        "the replay never reached the notifier's sent-marker check:\n{}",
        notifier.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_transcriber_on_redis_every_job_completes_with_one_email() {
    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    let Some(platform) = TestPlatform::start_on_postgres(redis.queue.clone()).await else {
        return;
    };
    let dir = TempDir::new("fault-redis");
    let backend = Backend {
        queue: redis.queue.clone(),
        platform,
        env: vec![
            ("REDIS_URL", redis.url.clone()),
            ("QUEUE_PREFIX", redis.prefix.clone()),
        ],
    };
    killed_transcriber_loses_nothing_and_mails_once(backend, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_transcriber_on_sqlite_every_job_completes_with_one_email() {
    let dir = TempDir::new("fault-sqlite");
    let (url, queue) = sqlite_queue_in(&dir, queue_config()).await;
    let queue: Arc<dyn ReliableQueue> = Arc::new(queue);
    let backend = Backend {
        platform: TestPlatform::start(queue.clone()).await,
        queue,
        env: vec![("QUEUE_DATABASE_URL", url)],
    };
    killed_transcriber_loses_nothing_and_mails_once(backend, &dir).await;
}
