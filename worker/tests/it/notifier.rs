//! The notifier: real SMTP to the sink, outbox files, idempotency by job id, and delivery
//! through the worker loop on the SQLite queue.

use std::sync::Arc;
use std::time::Duration;

use contracts::jobs::{NotifyJob, NotifyStatus};
use job_queue::{Envelope, Job, JobId, ReliableQueue};
use secrecy::SecretString;
use uuid::Uuid;
use worker::notifier::{MailConfig, NotifierConfig};
use worker::runner::JobHandler;
use worker::{Notifier, RunConfig};

use crate::helpers::{TempDir, TestQueue, eventually};
use test_support::smtp::SmtpSink;

pub fn notifier_config(smtp: Option<String>, dir: &TempDir) -> NotifierConfig {
    let mut run = RunConfig::new("notifier", NotifyJob::QUEUE);
    run.reserve_wait = Duration::from_millis(200);
    run.maintenance_interval = Duration::from_millis(100);
    run.shutdown_grace = Duration::from_secs(5);
    NotifierConfig {
        run,
        mail: MailConfig {
            smtp_url: smtp.map(SecretString::from),
            from: "Transcriptions <noreply@transcribe.test>".into(),
            outbox_dir: dir.path().join("outbox"),
            smtp_timeout: Duration::from_secs(10),
            smtp_ca_file: None,
        },
        report: None,
    }
}

fn notify_job(status: NotifyStatus, transcript: &str) -> NotifyJob {
    NotifyJob {
        transcription_id: Uuid::new_v4(),
        email: "listener@example.com".into(),
        transcript: transcript.into(),
        status,
    }
}

fn envelope(job: &NotifyJob) -> Envelope {
    let new = job.to_job().unwrap();
    Envelope::new(new.id.unwrap_or_else(JobId::random), new.kind, new.payload)
}

#[tokio::test]
async fn completed_notice_goes_over_smtp_with_recipient_subject_and_transcript() {
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("smtp");
    let queue = TestQueue::sqlite().await;
    let notifier =
        Notifier::new(notifier_config(Some(sink.url()), &dir), queue.queue.clone()).unwrap();
    let job = notify_job(
        NotifyStatus::Completed,
        "The committee discussed the quarterly results.",
    );

    notifier.handler().handle(&envelope(&job)).await.unwrap();

    let mail = sink.received();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].recipients, vec!["listener@example.com".to_owned()]);
    assert_eq!(mail[0].from, "noreply@transcribe.test");
    assert_eq!(
        mail[0].header("Subject").unwrap(),
        "Your transcription is ready"
    );
    assert_eq!(mail[0].header("To").unwrap(), "listener@example.com");
    assert_eq!(
        mail[0].header("Message-ID").unwrap(),
        format!("<notify-{}@transcribe.test>", job.transcription_id)
    );
    let body = mail[0].body();
    assert!(
        body.contains("The committee discussed the quarterly results."),
        "{body}"
    );
    assert!(body.contains(&job.transcription_id.to_string()), "{body}");
}

#[tokio::test]
async fn failed_notice_has_its_own_subject() {
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("smtp-failed");
    let queue = TestQueue::sqlite().await;
    let notifier =
        Notifier::new(notifier_config(Some(sink.url()), &dir), queue.queue.clone()).unwrap();
    let job = notify_job(NotifyStatus::Failed, "");

    notifier.handler().handle(&envelope(&job)).await.unwrap();

    let mail = sink.received();
    assert_eq!(mail.len(), 1);
    assert_eq!(
        mail[0].header("Subject").unwrap(),
        "Your transcription failed"
    );
    assert!(mail[0].body().contains("could not be transcribed"));
}

#[tokio::test]
async fn smtp_redelivery_of_the_same_job_sends_one_mail() {
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("smtp-once");
    let queue = TestQueue::sqlite().await;
    let notifier =
        Notifier::new(notifier_config(Some(sink.url()), &dir), queue.queue.clone()).unwrap();
    let job = notify_job(NotifyStatus::Completed, "once");
    let envelope = envelope(&job);

    notifier.handler().handle(&envelope).await.unwrap();
    notifier.handler().handle(&envelope).await.unwrap();

    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn unreachable_smtp_server_is_a_transient_failure() {
    let dir = TempDir::new("smtp-down");
    let queue = TestQueue::sqlite().await;
    let port = test_support::net::closed_port();
    let closed = format!("127.0.0.1:{port}");
    let notifier = Notifier::new(
        notifier_config(Some(format!("smtp://{closed}?tls=none")), &dir),
        queue.queue.clone(),
    )
    .unwrap();
    let job = notify_job(NotifyStatus::Completed, "x");
    let error = notifier
        .handler()
        .handle(&envelope(&job))
        .await
        .unwrap_err();
    assert!(matches!(error, worker::JobError::Transient(_)), "{error:?}");
}

#[tokio::test]
async fn outbox_mode_writes_one_eml_per_transcription() {
    let dir = TempDir::new("outbox");
    let queue = TestQueue::sqlite().await;
    let notifier = Notifier::new(notifier_config(None, &dir), queue.queue.clone()).unwrap();
    let first = notify_job(NotifyStatus::Completed, "first transcript");
    let second = notify_job(NotifyStatus::Failed, "");

    notifier.handler().handle(&envelope(&first)).await.unwrap();
    notifier.handler().handle(&envelope(&first)).await.unwrap();
    notifier.handler().handle(&envelope(&second)).await.unwrap();

    let outbox = dir.path().join("outbox");
    let mut names: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected = vec![
        format!("{}.eml", first.transcription_id),
        format!("{}.eml", second.transcription_id),
    ];
    expected.sort();
    assert_eq!(names, expected);
    let eml =
        std::fs::read_to_string(outbox.join(format!("{}.eml", first.transcription_id))).unwrap();
    assert!(
        eml.contains("Subject: Your transcription is ready"),
        "{eml}"
    );
    assert!(eml.contains("To: listener@example.com"), "{eml}");
    assert!(eml.contains("first transcript"), "{eml}");
}

#[tokio::test]
async fn bad_mail_from_fails_at_construction() {
    let dir = TempDir::new("from");
    let queue = TestQueue::sqlite().await;
    let mut config = notifier_config(None, &dir);
    config.mail.from = "not an address".into();
    assert!(Notifier::new(config, queue.queue.clone()).is_err());
}

/// Runs a notifier loop until the sink has `expected` messages and the notify queue holds no
/// job (ready, in flight or delayed), or 10 s pass for either.
pub async fn run_notifier_until(
    queue: Arc<dyn ReliableQueue>,
    sink: &SmtpSink,
    dir: &TempDir,
    expected: usize,
) {
    let notifier = Notifier::new(notifier_config(Some(sink.url()), dir), queue.clone()).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(notifier.run(async {
        let _ = rx.await;
    }));
    let arrived = eventually(Duration::from_secs(10), || async {
        sink.received().len() >= expected
    })
    .await;
    // Every job finished (none ready, in flight or waiting for a retry): a duplicate delivery
    // could only come from one of them, so the count below is final once the loop stops.
    let settled = eventually(Duration::from_secs(10), || async {
        let stats = queue.stats(NotifyJob::QUEUE).await.unwrap();
        stats.ready + stats.processing + stats.delayed == 0
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();
    assert!(arrived, "messages did not arrive; summary {summary:?}");
    assert!(settled, "notify jobs still pending; summary {summary:?}");
}

#[tokio::test]
async fn notify_job_through_the_sqlite_queue_is_delivered_once() {
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("loop");
    let queue = TestQueue::sqlite().await;
    let job = notify_job(NotifyStatus::Completed, "delivered once");
    let first = queue
        .queue
        .enqueue_job(NotifyJob::QUEUE, job.to_job().unwrap())
        .await
        .unwrap();
    let again = queue
        .queue
        .enqueue_job(NotifyJob::QUEUE, job.to_job().unwrap())
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(
        again.duplicate,
        "the second enqueue of notify-<id> is suppressed"
    );

    run_notifier_until(queue.queue.clone(), &sink, &dir, 1).await;

    let mail = sink.received();
    assert_eq!(mail.len(), 1);
    assert!(mail[0].body().contains("delivered once"));
    let stats = queue.queue.stats(NotifyJob::QUEUE).await.unwrap();
    assert_eq!(stats, job_queue::QueueStats::default(), "the job was acked");
}
