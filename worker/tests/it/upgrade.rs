//! An upgrade with jobs still in Redis: jobs an earlier version queued, in the wire form written
//! out here (kind, payload field names and job ids as literals, not produced by the `contracts`
//! types), are processed by this version's transcriber and notifier like their own.

use std::time::Duration;

use job_queue::{Envelope, JobId, QueueStats};
use redis::AsyncCommands;
use serde_json::json;
use worker::{Notifier, Transcriber};

use crate::download::{AUDIO_TRANSCRIPT, audio_host};
use crate::helpers::{RedisTestQueue, TempDir, eventually, redis_connection, signing_key};
use crate::notifier::notifier_config;
use crate::platform::TestPlatform;
use crate::transcriber::{SUBMITTER_EMAIL, transcriber_config};

/// A `notify` job exactly as an earlier version stored it in `<prefix>:notify:ready`, signed
/// with the tests' `JOB_SIGNING_KEY` outside this code (Python's `hmac`).
const STORED_NOTIFY: &str = r#"{"envelope":{"v":1,"id":"notify-0190d5e4-7c1a-7b2e-9f3d-2a6b8c4e1f08","kind":"notify","attempt":0,"enqueued_at":1700000000000,"payload":{"email":"listener@example.com","status":"completed","transcript":"queued before the upgrade","transcription_id":"0190d5e4-7c1a-7b2e-9f3d-2a6b8c4e1f08"}},"sig":"rfFtG-he67HMn3eXk5gRvss00hSe_PGpRnXeieQ9BIE"}"#;
const STORED_NOTIFY_KEY: &str = "0190d5e4-7c1a-7b2e-9f3d-2a6b8c4e1f08";

/// What an earlier version's enqueue left in Redis for job `id` of `queue` (its `ENQUEUE`
/// script: `HSETNX <prefix>:<queue>:ids`, `LPUSH <prefix>:<queue>:ready`,
/// `SADD <prefix>:_queues`).
async fn store_as_before(redis: &RedisTestQueue, queue: &str, id: &str, wire: &str) {
    let mut conn = redis_connection(&redis.url).await;
    let prefix = &redis.prefix;
    let _: () = conn
        .hset_nx(format!("{prefix}:{queue}:ids"), id, "1")
        .await
        .unwrap();
    let _: () = conn
        .lpush(format!("{prefix}:{queue}:ready"), wire)
        .await
        .unwrap();
    let _: () = conn.sadd(format!("{prefix}:_queues"), queue).await.unwrap();
}

#[tokio::test]
async fn jobs_queued_in_redis_by_an_earlier_version_are_processed_after_an_upgrade() {
    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    let queue = redis.queue.clone();
    let platform = TestPlatform::start(queue.clone()).await;
    let host = audio_host().await;
    let audio_url = format!("http://{host}/audio");
    let id = platform.submit(SUBMITTER_EMAIL, &audio_url).await;
    // The API queued the record's job; an earlier version had queued it instead. Take this
    // version's job away and store that version's.
    queue
        .heartbeat("inspector", Duration::from_secs(60))
        .await
        .unwrap();
    let queued = queue
        .reserve("transcribe", "inspector", Duration::ZERO)
        .await
        .unwrap()
        .expect("the API queued the job");
    assert_eq!(queued.envelope.id.as_str(), id.to_string());
    assert!(queue.ack(&queued).await.unwrap());
    let before = Envelope {
        v: 1,
        id: JobId::new(id.to_string()).unwrap(),
        kind: "transcribe".into(),
        attempt: 0,
        enqueued_at: 1_700_000_000_000,
        payload: json!({"transcription_id": id, "audio_url": audio_url,
                        "email": SUBMITTER_EMAIL}),
    };
    let wire = signing_key().seal(&before).unwrap();
    store_as_before(&redis, "transcribe", &id.to_string(), &wire).await;
    store_as_before(
        &redis,
        "notify",
        &format!("notify-{STORED_NOTIFY_KEY}"),
        STORED_NOTIFY,
    )
    .await;

    let scratch = TempDir::new("upgrade-scratch");
    let mail = TempDir::new("upgrade-mail");
    let transcriber = Transcriber::new(
        transcriber_config(&platform.api_url, platform.worker_credentials(), &scratch),
        queue.clone(),
    )
    .unwrap();
    let notifier = Notifier::new(notifier_config(None, &mail), queue.clone()).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let transcribing = tokio::spawn(transcriber.run(stopped(rx.clone())));
    let notifying = tokio::spawn(notifier.run(stopped(rx)));

    let outbox = mail.path().join("outbox");
    let new_mail = outbox.join(format!("{id}.eml"));
    let old_mail = outbox.join(format!("{STORED_NOTIFY_KEY}.eml"));
    let q = queue.clone();
    let done = eventually(Duration::from_secs(30), || {
        let q = q.clone();
        let (new_mail, old_mail) = (new_mail.clone(), old_mail.clone());
        async move {
            new_mail.exists()
                && old_mail.exists()
                && q.stats("transcribe").await.unwrap() == QueueStats::default()
                && q.stats("notify").await.unwrap() == QueueStats::default()
        }
    })
    .await;
    let _ = tx.send(true);
    let transcribed = transcribing.await.unwrap().unwrap();
    let notified = notifying.await.unwrap().unwrap();
    assert!(done, "transcriber {transcribed:?}, notifier {notified:?}");
    assert_eq!((transcribed.succeeded, transcribed.failed), (1, 0));
    assert_eq!((notified.succeeded, notified.failed), (2, 0));

    let record = platform.transcription(id).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["transcript"], AUDIO_TRANSCRIPT);
    let old = std::fs::read_to_string(&old_mail).unwrap();
    assert!(old.contains("queued before the upgrade"), "{old}");
    assert!(old.contains("listener@example.com"), "{old}");
    assert!(old.contains(STORED_NOTIFY_KEY), "{old}");
}
