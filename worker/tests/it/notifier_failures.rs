//! The notifier when things go wrong: a mail server that stalls (a real TCP server that never
//! greets, or never answers after `DATA`), permanent SMTP failures (dead list at once), the
//! notification state reported to the real transcription-api (and to an API too old to have
//! the route), and the "sent" markers kept in the queue backend (SQLite and Redis) so two
//! notifiers never both send.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use contracts::jobs::{NotifyJob, NotifyStatus};
use job_queue::{Envelope, Job, JobId, ReliableQueue};
use secrecy::SecretString;
use test_support::auth::TestAuthServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use uuid::Uuid;
use worker::api::ClientCredentials;
use worker::notifier::{NotifierConfig, ReportConfig, SmtpMailer};
use worker::runner::JobHandler;
use worker::{JobError, Notifier};

use crate::helpers::{RedisTestQueue, TempDir, TestQueue, eventually, serve};
use crate::notifier::notifier_config;
use crate::platform::{REPORT, TestPlatform};
use test_support::smtp::SmtpSink;

/// How the scripted SMTP server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Accepts the connection and never sends the greeting.
    NeverGreet,
    /// Takes the whole message and never answers after the final `.`.
    StallAfterData,
    /// Refuses every recipient with `550 5.1.1`.
    RejectRecipient,
}

/// A real TCP server speaking just enough SMTP to misbehave as `script` says.
async fn scripted_smtp(script: Script) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = session(socket, script).await;
            });
        }
    });
    addr
}

async fn session(socket: tokio::net::TcpStream, script: Script) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    if script == Script::NeverGreet {
        // Hold the connection open without a word until the client gives up.
        let mut lines = BufReader::new(read);
        let mut line = String::new();
        while lines.read_line(&mut line).await? > 0 {
            line.clear();
        }
        return Ok(());
    }
    let mut lines = BufReader::new(read);
    write.write_all(b"220 scripted.test ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
            b"250 scripted.test\r\n"
        } else if command.starts_with("MAIL") || command.starts_with("RSET") {
            b"250 ok\r\n"
        } else if command.starts_with("RCPT") {
            if script == Script::RejectRecipient {
                b"550 5.1.1 no such user here\r\n"
            } else {
                b"250 ok\r\n"
            }
        } else if command.starts_with("DATA") {
            write.write_all(b"354 go ahead\r\n").await?;
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
            }
            // StallAfterData: the message is in, the answer never comes.
            std::future::pending::<()>().await;
            return Ok(());
        } else if command.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

fn reporting(config: &mut NotifierConfig, api_url: &str, credentials: ClientCredentials) {
    config.report = Some(ReportConfig {
        api_url: api_url.to_owned(),
        credentials,
    });
}

fn job_to(email: &str) -> NotifyJob {
    job_about(Uuid::new_v4(), email)
}

/// The notice about transcription `id`.
fn job_about(id: Uuid, email: &str) -> NotifyJob {
    NotifyJob {
        transcription_id: id,
        email: email.into(),
        transcript: "hello".into(),
        status: NotifyStatus::Completed,
    }
}

fn envelope(job: &NotifyJob) -> Envelope {
    let new = job.to_job().unwrap();
    Envelope::new(new.id.unwrap_or_else(JobId::random), new.kind, new.payload)
}

/// Handles `job` directly and returns the error, failing the test if it takes longer than
/// `bound` (the SMTP deadline must end it well before).
async fn handle_within(notifier: &Notifier, job: &NotifyJob, bound: Duration) -> JobError {
    tokio::time::timeout(bound, notifier.handler().handle(&envelope(job)))
        .await
        .expect("the send was not cut off by the SMTP deadline")
        .unwrap_err()
}

#[tokio::test]
async fn a_server_that_never_greets_is_a_transient_timeout() {
    let server = scripted_smtp(Script::NeverGreet).await;
    let dir = TempDir::new("never-greets");
    let queue = TestQueue::sqlite().await;
    let mut config = notifier_config(Some(format!("smtp://{server}?tls=none")), &dir);
    config.mail.smtp_timeout = Duration::from_millis(500);
    let notifier = Notifier::new(config, queue.queue.clone()).unwrap();

    let error = handle_within(&notifier, &job_to("a@example.com"), Duration::from_secs(10)).await;

    assert!(
        matches!(&error, JobError::Transient(text) if text.contains("no answer")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_server_silent_after_data_is_retried_with_backoff_while_other_jobs_flow() {
    let stalled = scripted_smtp(Script::StallAfterData).await;
    let dir = TempDir::new("stall-data");
    let queue = TestQueue::sqlite().await;
    let mut config = notifier_config(Some(format!("smtp://{stalled}?tls=none")), &dir);
    config.mail.smtp_timeout = Duration::from_millis(500);
    config.run.concurrency = 2;
    let notifier = Notifier::new(config, queue.queue.clone()).unwrap();
    let job = job_to("stalled@example.com");
    queue
        .queue
        .enqueue_job(NotifyJob::QUEUE, job.to_job().unwrap())
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(notifier.run(async {
        let _ = rx.await;
    }));

    // The stalled send is cut off and the job goes back for a retry, again and again, until
    // it is dead after max_attempts (3 in tests): the loop never hangs on it.
    let q = queue.queue.clone();
    let dead = eventually(Duration::from_secs(20), || {
        let q = q.clone();
        async move { q.stats(NotifyJob::QUEUE).await.unwrap().dead == 1 }
    })
    .await;
    let _ = tx.send(());
    let summary = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the worker loop stops while the server still stalls")
        .unwrap()
        .unwrap();
    assert!(
        dead,
        "the stalled job never finished its retries: {summary:?}"
    );
    assert_eq!(summary.failed, 3, "three timed-out deliveries: {summary:?}");
    let entry = &queue.queue.dead(NotifyJob::QUEUE).await.unwrap()[0];
    assert_eq!(entry.attempt, 3, "retried, not buried: {entry:?}");
    assert!(entry.reason.contains("no answer"), "{entry:?}");
}

#[tokio::test]
async fn other_jobs_keep_flowing_while_one_send_stalls() {
    // Two notifiers share one queue: one talks to a stalled server, the other to a working
    // one; the working one delivers every job it takes while the stalled one is stuck.
    let stalled = scripted_smtp(Script::StallAfterData).await;
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("flow");
    let queue = TestQueue::sqlite().await;
    let mut slow = notifier_config(Some(format!("smtp://{stalled}?tls=none")), &dir);
    slow.mail.smtp_timeout = Duration::from_secs(5);
    slow.run.worker_id = "stalled-notifier".into();
    let mut fast = notifier_config(Some(sink.url()), &dir);
    fast.run.worker_id = "working-notifier".into();
    for n in 0..4 {
        let job = job_to(&format!("user{n}@example.com"));
        queue
            .queue
            .enqueue_job(NotifyJob::QUEUE, job.to_job().unwrap())
            .await
            .unwrap();
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let slow = tokio::spawn(
        Notifier::new(slow, queue.queue.clone())
            .unwrap()
            .run(stop(rx.clone())),
    );
    let fast = tokio::spawn(
        Notifier::new(fast, queue.queue.clone())
            .unwrap()
            .run(stop(rx.clone())),
    );

    // At most one job is stuck with the stalled notifier; the other three arrive.
    let flowed = eventually(Duration::from_secs(4), || async {
        sink.received().len() >= 3
    })
    .await;
    let _ = tx.send(true);
    let _ = slow.await.unwrap().unwrap();
    let _ = fast.await.unwrap().unwrap();
    assert!(flowed, "only {} mails got through", sink.received().len());
}

#[tokio::test]
async fn a_refused_recipient_goes_to_the_dead_list_at_once_and_is_reported_failed() {
    let server = scripted_smtp(Script::RejectRecipient).await;
    let dir = TempDir::new("reject");
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let id = platform
        .submit("nobody@example.com", "http://203.0.113.1/a")
        .await;
    let mut config = notifier_config(Some(format!("smtp://{server}?tls=none")), &dir);
    reporting(
        &mut config,
        &platform.api_url,
        platform.worker_credentials(),
    );
    let notifier = Notifier::new(config, queue.queue.clone()).unwrap();
    let job = job_about(id, "nobody@example.com");
    queue
        .queue
        .enqueue_job(NotifyJob::QUEUE, job.to_job().unwrap())
        .await
        .unwrap();

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(notifier.run(async {
        let _ = rx.await;
    }));
    let reported = eventually(Duration::from_secs(10), || async {
        platform.transcription(id).await["notification"]["status"] == "failed"
    })
    .await;
    let _ = tx.send(());
    let summary = running.await.unwrap().unwrap();

    assert!(reported, "no notification state reported: {summary:?}");
    assert_eq!(summary.failed, 1, "one delivery, no retries: {summary:?}");
    let dead = queue.queue.dead(NotifyJob::QUEUE).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].attempt, 1,
        "dead at the first failure: {:?}",
        dead[0]
    );
    assert!(dead[0].reason.contains("550"), "{:?}", dead[0]);
    // The owner reads it through the API.
    assert_eq!(
        platform.transcription(id).await["notification"],
        serde_json::json!({"status": "failed",
                           "reason": "SMTP: permanent error (550): 5.1.1 no such user here"})
    );
}

#[tokio::test]
async fn an_address_lettre_refuses_is_dead_at_once() {
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("bad-address");
    let queue = TestQueue::sqlite().await;
    let notifier =
        Notifier::new(notifier_config(Some(sink.url()), &dir), queue.queue.clone()).unwrap();
    for email in ["a..b@example.com", ".a@example.com", "a.@example.com"] {
        let error = handle_within(&notifier, &job_to(email), Duration::from_secs(5)).await;
        assert!(
            matches!(error, JobError::Permanent(_)),
            "{email}: {error:?}"
        );
    }
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn sent_is_reported_after_the_mail_is_accepted() {
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("report-sent");
    let queue = TestQueue::sqlite().await;
    let platform = TestPlatform::start(queue.queue.clone()).await;
    let id = platform
        .submit("listener@example.com", "http://203.0.113.1/a")
        .await;
    let mut config = notifier_config(Some(sink.url()), &dir);
    reporting(
        &mut config,
        &platform.api_url,
        platform.worker_credentials(),
    );
    let notifier = Notifier::new(config, queue.queue.clone()).unwrap();
    let job = job_about(id, "listener@example.com");
    assert_eq!(
        platform.transcription(id).await["notification"],
        serde_json::json!({"status": "pending"})
    );

    notifier.handler().handle(&envelope(&job)).await.unwrap();

    assert_eq!(sink.received().len(), 1);
    assert_eq!(
        platform.transcription(id).await["notification"],
        serde_json::json!({"status": "sent"})
    );
    // A redelivery finds the sent-marker and repeats the report: the API keeps `sent`.
    notifier.handler().handle(&envelope(&job)).await.unwrap();
    assert_eq!(sink.received().len(), 1);
    assert_eq!(
        platform.transcription(id).await["notification"],
        serde_json::json!({"status": "sent"})
    );
}

#[tokio::test]
async fn an_api_without_the_notification_route_is_not_a_job_failure() {
    let sink = SmtpSink::start().await;
    let auth = TestAuthServer::spawn().await;
    let worker = auth.client(&[REPORT]).await;
    // A stand-in for a transcription-api older than the notification route: every call 404.
    let api_url = format!("http://{}", serve(Router::new()).await);
    let dir = TempDir::new("report-404");
    let queue = TestQueue::sqlite().await;
    let mut config = notifier_config(Some(sink.url()), &dir);
    let credentials = ClientCredentials {
        token_url: format!("{}/oauth/token", auth.base),
        client_id: worker.0,
        client_secret: SecretString::from(worker.1),
        scope: REPORT.into(),
    };
    reporting(&mut config, &api_url, credentials);
    let notifier = Notifier::new(config, queue.queue.clone()).unwrap();

    notifier
        .handler()
        .handle(&envelope(&job_to("listener@example.com")))
        .await
        .expect("a 404 from the API is logged, not a failure");

    assert_eq!(sink.received().len(), 1);
}

/// Two notifiers with nothing in common but the queue (separate directories, as on two
/// machines) handle the same job: one mail, and the marker is in the queue backend.
async fn two_notifiers_on_one_queue_send_once(queue: Arc<dyn ReliableQueue>) {
    let sink = SmtpSink::start().await;
    let (dir_a, dir_b) = (TempDir::new("machine-a"), TempDir::new("machine-b"));
    let a = Notifier::new(notifier_config(Some(sink.url()), &dir_a), queue.clone()).unwrap();
    let b = Notifier::new(notifier_config(Some(sink.url()), &dir_b), queue.clone()).unwrap();
    let job = job_to("listener@example.com");

    a.handler().handle(&envelope(&job)).await.unwrap();
    b.handler().handle(&envelope(&job)).await.unwrap();

    assert_eq!(sink.received().len(), 1);
    assert!(
        queue
            .has_marker(&SmtpMailer::marker(job.transcription_id))
            .await
            .unwrap()
    );
    let other = job_to("other@example.com");
    b.handler().handle(&envelope(&other)).await.unwrap();
    assert_eq!(sink.received().len(), 2, "another transcription is sent");
}

#[tokio::test]
async fn sent_markers_are_shared_through_the_sqlite_queue() {
    let queue = TestQueue::sqlite().await;
    two_notifiers_on_one_queue_send_once(queue.queue.clone()).await;
}

#[tokio::test]
async fn sent_markers_are_shared_through_redis() {
    let Some(queue) = RedisTestQueue::connect().await else {
        return;
    };
    two_notifiers_on_one_queue_send_once(queue.queue.clone()).await;
}
