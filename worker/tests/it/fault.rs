//! Fault test with real processes: a `worker transcriber` is SIGKILLed in the middle of a
//! batch, a second one takes over, and every user still gets exactly one e-mail.
//!
//! Set-up: N `transcribe` jobs on the queue (Redis under a random prefix, or a SQLite file
//! shared by the processes), the real auth server in-process for the workers' tokens, a local
//! audio host, the stateful stub of transcription-api's result endpoint (204 for a first or an
//! identical final report, 409 for a differing one, like the real API) and the SMTP sink.
//!
//! 1. Worker A (`worker transcriber`, 2 slots, 150 ms simulated engine, 3 s heartbeat TTL)
//!    starts. Once some, but not all, transcriptions are final *and* A holds jobs in its
//!    processing list, A gets SIGKILL: no shutdown path runs, its in-flight jobs stay in its
//!    processing list and its heartbeat key simply expires.
//! 2. Worker B (another transcriber) and a `worker notifier` (SMTP to the sink) start. B's
//!    maintenance loop reaps A's jobs once A's heartbeat has expired.
//! 3. The test waits until every transcription is final and both queues are empty (ready,
//!    processing, delayed and dead all zero). That is the end of all work, not a time-out: a
//!    transcribe job is acked only after its notify job was enqueued, and a notify job only
//!    after the mail was accepted, so with both queues empty no further mail can be sent.
//! 4. The kill lands almost always in the engine's delay, rarely between the notify enqueue
//!    and the ack. That window is replayed on purpose: a quarter of the transcribe jobs are
//!    enqueued again (same ids and payloads, as a redelivery would be) after their mails went
//!    out, and the test waits for both queues to be empty again.
//!
//! Why one e-mail per transcription although delivery is at least once: a job A was killed
//! in the middle of runs again on B. The re-run reports `processing` (409: already final,
//! taken as success), transcribes again (deterministic engine, so the final report is
//! identical: 204) and enqueues `notify-<transcription_id>` again. Then
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

use job_queue::{QueueStats, ReliableQueue, SqliteQueue};
use uuid::Uuid;
use worker::jobs::{NOTIFY_QUEUE, TRANSCRIBE_QUEUE, TranscribeJob};

use crate::download::{AUDIO_TRANSCRIPT, audio_host};
use crate::helpers::{
    AuthFixture, RedisTestQueue, SIGNING_KEY, TempDir, WorkerProcess, eventually, queue_config,
    signing_key,
};
use crate::smtp_sink::SmtpSink;
use crate::transcriber::{ApiMode, StubApi};

const JOBS: usize = 40;

/// The queue under test, with the environment that points a `worker` process at it.
struct Backend {
    queue: Arc<dyn ReliableQueue>,
    env: Vec<(&'static str, String)>,
}

async fn stats(queue: &dyn ReliableQueue, name: &str) -> QueueStats {
    queue.stats(name).await.unwrap()
}

async fn killed_transcriber_loses_nothing_and_mails_once(backend: Backend, dir: &TempDir) {
    let queue: &dyn ReliableQueue = backend.queue.as_ref();
    let auth = AuthFixture::start().await;
    let api = StubApi::start(ApiMode::Stateful).await;
    let host = audio_host().await;
    let sink = SmtpSink::start().await;
    let (api, sink) = (&api, &sink);

    let jobs: Vec<TranscribeJob> = (0..JOBS)
        .map(|i| TranscribeJob {
            transcription_id: Uuid::new_v4(),
            audio_url: format!("http://{host}/audio"),
            email: format!("user-{i}@example.com"),
        })
        .collect();
    for job in &jobs {
        let enqueued = queue
            .enqueue_job(TRANSCRIBE_QUEUE, job.to_job().unwrap())
            .await
            .unwrap();
        assert!(!enqueued.duplicate);
    }

    let mut common = backend.env.clone();
    common.extend([
        ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
        ("WORKER_CONCURRENCY", "4".to_owned()),
        ("HEARTBEAT_TTL_SECS", "3".to_owned()),
        ("SHUTDOWN_GRACE_SECS", "5".to_owned()),
    ]);
    let mut transcriber_env = common.clone();
    transcriber_env.extend([
        ("TRANSCRIPTION_API_URL", api.url()),
        ("AUTH_URL", auth.base.clone()),
        ("WORKER_CLIENT_ID", auth.client_id.clone()),
        ("WORKER_CLIENT_SECRET", auth.client_secret.clone()),
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
    let mut first = WorkerProcess::spawn(
        &["transcriber"],
        &first_env,
        dir.path().join("transcriber-a.log"),
    );
    let mid_batch = eventually(Duration::from_secs(60), || async move {
        api.finals().len() >= JOBS / 5 && stats(queue, TRANSCRIBE_QUEUE).await.processing > 0
    })
    .await;
    assert!(mid_batch, "worker A made no progress:\n{}", first.log());
    first.kill();
    let final_at_kill = api.finals().len();
    let held_by_dead_worker = stats(queue, TRANSCRIBE_QUEUE).await.processing;
    assert_eq!(first.exit_status().and_then(|s| s.signal()), Some(9));
    assert!(
        final_at_kill < JOBS,
        "worker A finished the whole batch before it was killed"
    );
    assert!(
        held_by_dead_worker > 0,
        "worker A held no jobs when it was killed"
    );

    // 2. Worker B and the notifier.
    let mut second = WorkerProcess::spawn(
        &["transcriber"],
        &transcriber_env,
        dir.path().join("transcriber-b.log"),
    );
    let mut notifier = WorkerProcess::spawn(
        &["notifier"],
        &notifier_env,
        dir.path().join("notifier.log"),
    );

    // 3. Until all work is done (see the module docs).
    let drained = eventually(Duration::from_secs(90), || async move {
        api.finals().len() == JOBS
            && stats(queue, TRANSCRIBE_QUEUE).await == QueueStats::default()
            && stats(queue, NOTIFY_QUEUE).await == QueueStats::default()
    })
    .await;
    assert!(
        drained,
        "work left: {} final, transcribe {:?}, notify {:?}, {} mails\n--- A\n{}\n--- B\n{}\n--- notifier\n{}",
        api.finals().len(),
        stats(queue, TRANSCRIBE_QUEUE).await,
        stats(queue, NOTIFY_QUEUE).await,
        sink.received().len(),
        first.log(),
        second.log(),
        notifier.log()
    );
    assert_eq!(
        second.exit_status(),
        None,
        "worker B died:\n{}",
        second.log()
    );
    assert_eq!(notifier.exit_status(), None, "{}", notifier.log());
    // B's or the notifier's maintenance loop (both reap every queue) returned A's jobs.
    let survivors = format!("{}{}", second.log(), notifier.log());
    assert!(
        survivors.contains("returned jobs of"),
        "nobody reaped worker A's jobs:\n{survivors}"
    );

    // 4. The crash window a kill cannot aim at: a transcriber dying after it enqueued the
    // notify job and before its ack. Its job is redelivered after the mail went out and the
    // notify job was acked, so the id is free and a second notify job is really enqueued.
    // Replayed here for a quarter of the jobs: same ids, same payloads.
    for job in jobs.iter().take(JOBS / 4) {
        let enqueued = queue
            .enqueue_job(TRANSCRIBE_QUEUE, job.to_job().unwrap())
            .await
            .unwrap();
        assert!(!enqueued.duplicate, "the acked id is free again");
    }
    let replayed = eventually(Duration::from_secs(60), || async move {
        stats(queue, TRANSCRIBE_QUEUE).await == QueueStats::default()
            && stats(queue, NOTIFY_QUEUE).await == QueueStats::default()
    })
    .await;
    assert!(
        replayed,
        "replayed jobs not done: transcribe {:?}, notify {:?}\n--- B\n{}\n--- notifier\n{}",
        stats(queue, TRANSCRIBE_QUEUE).await,
        stats(queue, NOTIFY_QUEUE).await,
        second.log(),
        notifier.log()
    );

    // Every transcription completed, with the one transcript the engine gives, and no report
    // ever contradicted a stored final one.
    let transcript = AUDIO_TRANSCRIPT.to_owned();
    let finals = api.finals();
    for job in &jobs {
        let id = job.transcription_id.to_string();
        assert_eq!(
            finals[&id],
            serde_json::json!({"status": "completed", "transcript": transcript}),
            "{id}"
        );
    }
    for (id, _, body) in api.reports() {
        if body["status"] != "processing" {
            assert_eq!(body, finals[&id], "a differing final report for {id}");
        }
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
    for job in &jobs {
        let message = mail
            .iter()
            .find(|m| m.recipients[0] == job.email)
            .unwrap_or_else(|| panic!("no e-mail to {}", job.email));
        assert_eq!(
            message.header("Subject").unwrap(),
            "Your transcription is ready"
        );
        assert_eq!(
            message.header("Message-ID").unwrap(),
            format!("<notify-{}@transcribe.test>", job.transcription_id)
        );
        assert!(message.body().contains(&transcript));
    }
    // The replay really went through the notifier's second line of defence.
    assert!(
        notifier
            .log()
            .contains("message was sent before; not sending again"),
        "the replay never reached the notifier's sent-marker check:\n{}",
        notifier.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_transcriber_on_redis_every_job_completes_with_one_email() {
    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    let dir = TempDir::new("fault-redis");
    let backend = Backend {
        queue: redis.queue.clone(),
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
    let url = format!("sqlite:{}", dir.path().join("queue.db").display());
    let queue = SqliteQueue::connect(&url, signing_key(), queue_config())
        .await
        .unwrap();
    queue.migrate().await.unwrap();
    let backend = Backend {
        queue: Arc::new(queue),
        env: vec![("QUEUE_DATABASE_URL", url)],
    };
    killed_transcriber_loses_nothing_and_mails_once(backend, &dir).await;
}
