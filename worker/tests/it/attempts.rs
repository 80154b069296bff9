//! Every attempt of a transcription (its owner retries it after it failed) has its own notify
//! job and its own e-mail: the first attempt's "sent" marker or outbox file does not swallow
//! the second's, and a redelivery within an attempt still sends nothing twice.

use contracts::jobs::{NotifyJob, NotifyStatus};
use job_queue::{Envelope, JobId};
use uuid::Uuid;
use worker::Notifier;
use worker::runner::JobHandler;

use crate::helpers::{TempDir, TestQueue};
use crate::notifier::notifier_config;
use test_support::smtp::SmtpSink;

/// The notify job the transcriber queues after the transcribe job `transcribe_id`.
fn notify_after(job: &NotifyJob, transcribe_id: &str) -> Envelope {
    let new = job
        .to_job_after(&JobId::new(transcribe_id).unwrap())
        .unwrap();
    Envelope::new(new.id.unwrap(), new.kind, new.payload)
}

/// The failure notice of attempt 1 and the result of attempt 2 of one transcription.
fn two_attempts() -> (Uuid, Envelope, Envelope) {
    let id = Uuid::new_v4();
    let notice = |status, transcript: &str| NotifyJob {
        transcription_id: id,
        email: "listener@example.com".into(),
        transcript: transcript.into(),
        status,
    };
    let first = notify_after(&notice(NotifyStatus::Failed, ""), &id.to_string());
    let second = notify_after(
        &notice(NotifyStatus::Completed, "second time lucky"),
        &format!("{id}-attempt-2"),
    );
    (id, first, second)
}

#[tokio::test]
async fn each_attempt_is_mailed_once_over_smtp() {
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("attempts-smtp");
    let queue = TestQueue::sqlite().await;
    let notifier =
        Notifier::new(notifier_config(Some(sink.url()), &dir), queue.queue.clone()).unwrap();
    let (id, first, second) = two_attempts();
    for envelope in [&first, &first, &second, &second] {
        notifier.handler().handle(envelope).await.unwrap();
    }
    let mail = sink.received();
    assert_eq!(mail.len(), 2, "one mail per attempt");
    assert_eq!(
        mail[0].header("Subject").unwrap(),
        "Your transcription failed"
    );
    assert_eq!(
        mail[0].header("Message-ID").unwrap(),
        format!("<notify-{id}@transcribe.test>")
    );
    assert_eq!(
        mail[1].header("Subject").unwrap(),
        "Your transcription is ready"
    );
    assert_eq!(
        mail[1].header("Message-ID").unwrap(),
        format!("<notify-{id}-attempt-2@transcribe.test>")
    );
    assert!(mail[1].body().contains("second time lucky"));
}

#[tokio::test]
async fn each_attempt_has_its_own_outbox_file() {
    let dir = TempDir::new("attempts-outbox");
    let queue = TestQueue::sqlite().await;
    let notifier = Notifier::new(notifier_config(None, &dir), queue.queue.clone()).unwrap();
    let (id, first, second) = two_attempts();
    for envelope in [&first, &second, &second] {
        notifier.handler().handle(envelope).await.unwrap();
    }
    let outbox = dir.path().join("outbox");
    let mut files: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, [format!("{id}-attempt-2.eml"), format!("{id}.eml")]);
    let second_mail = std::fs::read_to_string(outbox.join(format!("{id}-attempt-2.eml"))).unwrap();
    assert!(second_mail.contains("Your transcription is ready"));
}
