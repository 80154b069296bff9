//! The record and its job stay together: the outbox is the only path from a record to the
//! queue. A queue that is down or paused at request time gives 202 and the relay queues the job
//! once it answers; a late duplicate of a timed-out enqueue is suppressed by the queue; a crash
//! between commit and enqueue, or a queue that lost its data, is repaired by the relay.

use std::sync::Arc;
use std::time::Duration;

use contracts::jobs::TranscribeJob;
use contracts::report::ResultReport;
use job_queue::{Job, QueueConfig, RedisQueue, ReliableQueue};
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};
use time::OffsetDateTime;
use transcription_api::submissions::OutboxConfig;
use uuid::Uuid;

use crate::helpers::*;
use crate::proxy::{delete_prefix, redis_behind_proxy};

#[tokio::test]
async fn queue_down_gives_202_and_the_relay_queues_the_job_once_it_is_back() {
    let Some((proxy, queue, direct, prefix)) = redis_behind_proxy().await else {
        return;
    };
    let api = TestApi::spawn_with(Options {
        queue: Some(queue),
        outbox: OutboxConfig {
            enqueue_timeout: Duration::from_secs(1),
            relay_interval: Duration::from_secs(3600),
            ..OutboxConfig::default()
        },
        ..Options::default()
    })
    .await;
    let token = api.token(&[WRITE, READ]).await;

    proxy.cut();
    let response = api.submit(&token, &sample_body()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "accepted, delayed");
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown: Value = api
        .get(&token, &format!("/transcriptions/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "queued");
    assert_eq!(api.transcriptions.store().outbox_len().await.unwrap(), 1);

    proxy.restore();
    // The relay was woken at once and failed while Redis was away; its lease (grace) makes the
    // entry due again, and a pass once Redis answers queues the job.
    let mut settled = 0;
    for _ in 0..50 {
        settled += api.transcriptions.relay_once().await.unwrap();
        if api.transcriptions.store().outbox_len().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(api.transcriptions.store().outbox_len().await.unwrap(), 0);
    assert!(settled <= 1);
    let job = direct
        .reserve(TranscribeJob::QUEUE, "w1", Duration::ZERO)
        .await
        .unwrap()
        .expect("the job is in Redis");
    assert_eq!(job.envelope.id.as_str(), id);
    drop(api);
    delete_prefix(&prefix).await;
}

#[tokio::test]
async fn redis_paused_in_flight_replay_is_409_then_one_job_and_the_record_stays() {
    let Some((proxy, queue, direct, prefix)) = redis_behind_proxy().await else {
        return;
    };
    in_flight_replay_while_redis_is_paused(queue, direct, || proxy.stall(), || proxy.resume())
        .await;
    delete_prefix(&prefix).await;
}

/// The same with a real Redis process of its own, stopped with `kill -STOP` and resumed with
/// `kill -CONT`, as the reproduction did.
#[tokio::test]
async fn a_real_redis_stopped_and_continued_gives_409_then_one_job_and_the_record_stays() {
    let Some(redis) = test_support::redis::OwnRedis::start(None).await else {
        return;
    };
    let prefix = format!("api-it-{}", Uuid::new_v4().simple());
    let connect =
        || RedisQueue::connect(redis.url(), &prefix, signing_key(), QueueConfig::default());
    let queue: Arc<dyn ReliableQueue> = Arc::new(connect().await.unwrap());
    let direct = connect().await.unwrap();
    in_flight_replay_while_redis_is_paused(queue, direct, || redis.suspend(), || redis.resume())
        .await;
}

/// A keyed submission while Redis does not answer: a repeat in flight gets 409, the first gets
/// 202 once its enqueue times out, the record stays, and after Redis resumes (running the
/// timed-out enqueue late) the application's own relay leaves exactly one job.
async fn in_flight_replay_while_redis_is_paused(
    queue: Arc<dyn ReliableQueue>,
    direct: RedisQueue,
    pause: impl Fn(),
    resume: impl Fn(),
) {
    let api = TestApi::spawn_with(Options {
        queue: Some(queue),
        outbox: OutboxConfig {
            enqueue_timeout: Duration::from_secs(2),
            grace: Duration::from_millis(100),
            // The application's own relay runs: nothing here calls `relay_once`.
            relay_interval: Duration::from_secs(1),
            ..OutboxConfig::default()
        },
        ..Options::default()
    })
    .await;
    let token = api.token(&[WRITE, READ]).await;
    let keyed = |api: &TestApi| {
        api.http
            .post(api.url("/transcriptions"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "k1")
            .json(&sample_body())
    };

    pause();
    let first = tokio::spawn(keyed(&api).send());
    // Wait until the record is committed and the request is waiting for the paused Redis.
    let mut committed = false;
    for _ in 0..100 {
        let listed: Value = api
            .get(&token, "/transcriptions")
            .await
            .json()
            .await
            .unwrap();
        if listed["data"].as_array().is_some_and(|d| !d.is_empty()) {
            committed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(committed);
    let retry = keyed(&api).send().await.unwrap();
    assert_eq!(
        retry.status(),
        StatusCode::CONFLICT,
        "in flight: not replayed"
    );
    let wait: u64 = retry.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&wait), "Retry-After {wait}");
    assert_eq!(retry.json::<Value>().await.unwrap()["error"], "conflict");

    let first = first.await.unwrap().unwrap();
    assert_eq!(
        first.status(),
        StatusCode::ACCEPTED,
        "the enqueue timed out: 202 anyway"
    );
    let id = first.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let replay = keyed(&api).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], id.as_str());
    let shown = api.get(&token, &format!("/transcriptions/{id}")).await;
    assert_eq!(shown.status(), StatusCode::OK, "the record stays");

    // Resumed, Redis runs the timed-out enqueue late; the relay enqueues too: one job.
    resume();
    for _ in 0..100 {
        if api.transcriptions.store().outbox_len().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(api.transcriptions.store().outbox_len().await.unwrap(), 0);
    let stats = direct.stats(TranscribeJob::QUEUE).await.unwrap();
    assert_eq!(
        stats.ready, 1,
        "the late command and the relay give one job"
    );
    let job = direct
        .reserve(TranscribeJob::QUEUE, "w1", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.envelope.id.as_str(), id);
    drop(api);
}

/// The relay re-queues a record still `queued` after `requeue_stale_after` when the queue lost
/// its job, and adds nothing while the queue holds it.
async fn stale_record_is_requeued(api: &TestApi, lose_data: impl AsyncFnOnce()) {
    let token = api.token(&[WRITE]).await;
    let id = api.create(&token).await;
    let queue = &api.queue;
    assert_eq!(queue.stats(TranscribeJob::QUEUE).await.unwrap().ready, 1);
    api.transcriptions.relay_once().await.unwrap();
    assert_eq!(
        queue.stats(TranscribeJob::QUEUE).await.unwrap().ready,
        1,
        "the queue holds the job: nothing added"
    );

    lose_data().await;
    assert_eq!(queue.stats(TranscribeJob::QUEUE).await.unwrap().ready, 0);
    api.transcriptions.relay_once().await.unwrap();
    let job = queue
        .reserve(TranscribeJob::QUEUE, "w2", Duration::ZERO)
        .await
        .unwrap()
        .expect("requeued");
    assert_eq!(job.envelope.id.as_str(), id.to_string());
}

fn stale_at_once() -> OutboxConfig {
    OutboxConfig {
        relay_interval: Duration::from_secs(3600),
        requeue_stale_after: Duration::ZERO,
        ..OutboxConfig::default()
    }
}

/// An API on the test's own Redis prefix whose stale-record repair runs at once; `None` (a
/// skip) outside CI without Redis.
async fn api_on_redis_with_stale_repair_at_once() -> Option<(TestApi, String)> {
    let url = test_support::redis::reachable_url().await?;
    let prefix = format!("api-it-{}", Uuid::new_v4().simple());
    let queue = RedisQueue::connect(&url, &prefix, signing_key(), QueueConfig::default())
        .await
        .unwrap();
    let api = TestApi::spawn_with(Options {
        queue: Some(Arc::new(queue)),
        outbox: stale_at_once(),
        ..Options::default()
    })
    .await;
    Some((api, prefix))
}

#[tokio::test]
async fn a_queued_record_whose_job_the_embedded_queue_lost_is_requeued() {
    let api = TestApi::spawn_with(Options {
        outbox: stale_at_once(),
        ..Options::default()
    })
    .await;
    let queue = api.queue.clone();
    stale_record_is_requeued(&api, async || {
        // Gone without a report (the queue's data lost): taken and acked.
        let job = queue
            .reserve(TranscribeJob::QUEUE, "w1", Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert!(queue.ack(&job).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn a_queued_record_whose_job_redis_lost_is_requeued() {
    let Some((api, prefix)) = api_on_redis_with_stale_repair_at_once().await else {
        return;
    };
    stale_record_is_requeued(&api, async || delete_prefix(&prefix).await).await;
    drop(api);
    delete_prefix(&prefix).await;
}

/// The stale-record repair hands over only records still `queued`: records a worker moved on
/// (`processing`, `completed`, `failed`), whose jobs the queue no longer holds either, are
/// never queued again and stay exactly as they were. A `queued` record in the same state is
/// handed over by the same pass, so the repair did run.
async fn records_past_queued_are_never_requeued(api: &TestApi, lose_data: impl AsyncFnOnce()) {
    let user = api.token(&[WRITE, READ]).await;
    let worker = api.token(&[REPORT]).await;
    let mut moved_on = Vec::new();
    for report in [
        json!({"status": "processing"}),
        json!({"status": "completed", "transcript": "hello world"}),
        json!({"status": "failed", "error": "the audio could not be downloaded (timeout)"}),
    ] {
        let id = api.create(&user).await.to_string();
        assert_eq!(
            api.report(&worker, &id, &report).await.status(),
            StatusCode::NO_CONTENT
        );
        let path = format!("/transcriptions/{id}");
        let shown: Value = api.get(&user, &path).await.json().await.unwrap();
        assert_eq!(shown["status"], report["status"]);
        moved_on.push((path, shown));
    }
    let still_queued = api.create(&user).await;
    let queue = &api.queue;
    assert_eq!(queue.stats(TranscribeJob::QUEUE).await.unwrap().ready, 4);

    lose_data().await;
    let empty = queue.stats(TranscribeJob::QUEUE).await.unwrap();
    assert_eq!(
        (empty.ready, empty.processing, empty.delayed, empty.dead),
        (0, 0, 0, 0)
    );
    let settled = api.transcriptions.relay_once().await.unwrap();

    let stats = queue.stats(TranscribeJob::QUEUE).await.unwrap();
    assert_eq!(
        (stats.ready, stats.processing, stats.delayed, stats.dead),
        (1, 0, 0, 0),
        "one job: the queued record's"
    );
    assert_eq!(settled, 1, "only the queued record is handed over again");
    let job = queue
        .reserve(TranscribeJob::QUEUE, "w2", Duration::ZERO)
        .await
        .unwrap()
        .expect("the queued record's job");
    assert_eq!(job.envelope.id.as_str(), still_queued.to_string());
    assert_eq!(api.transcriptions.store().outbox_len().await.unwrap(), 0);
    for (path, before) in moved_on {
        let after: Value = api.get(&user, &path).await.json().await.unwrap();
        assert_eq!(after, before, "{path} is unchanged");
    }
}

#[tokio::test]
async fn records_past_queued_are_never_requeued_on_the_embedded_queue() {
    let api = TestApi::spawn_with(Options {
        outbox: stale_at_once(),
        ..Options::default()
    })
    .await;
    let queue = api.queue.clone();
    records_past_queued_are_never_requeued(&api, async || {
        // Every job gone without a new report (the queue's data lost): taken and acked.
        while let Some(job) = queue
            .reserve(TranscribeJob::QUEUE, "w1", Duration::ZERO)
            .await
            .unwrap()
        {
            assert!(queue.ack(&job).await.unwrap());
        }
    })
    .await;
}

#[tokio::test]
async fn records_past_queued_are_never_requeued_on_redis() {
    let Some((api, prefix)) = api_on_redis_with_stale_repair_at_once().await else {
        return;
    };
    records_past_queued_are_never_requeued(&api, async || delete_prefix(&prefix).await).await;
    drop(api);
    delete_prefix(&prefix).await;
}

#[tokio::test]
async fn the_relay_queues_a_record_whose_enqueue_never_happened() {
    let api = TestApi::spawn().await;
    let store = api.transcriptions.store().clone();
    // What a crash right after the commit leaves: the record and its outbox entry, due now.
    let orphan = record("someone");
    store.insert(&orphan, None, 0).await.unwrap();
    // A record whose job was evidently queued (a worker reported on it) but whose entry stayed.
    let started = record("someone");
    store.insert(&started, None, 0).await.unwrap();
    store
        .report(
            started.id,
            &ResultReport::Processing,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    // An entry still within its grace period (a request in flight) is left alone.
    let in_flight = record("someone");
    store.insert(&in_flight, None, i64::MAX).await.unwrap();

    assert_eq!(api.transcriptions.relay_once().await.unwrap(), 2);
    let stats = api.queue.stats(TranscribeJob::QUEUE).await.unwrap();
    assert_eq!(stats.ready, 1, "only the orphan is queued");
    let job = api
        .queue
        .reserve(TranscribeJob::QUEUE, "w1", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.envelope.id.as_str(), orphan.id.to_string());
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    assert_eq!(api.transcriptions.relay_once().await.unwrap(), 0);
}

#[tokio::test]
async fn the_relay_keeps_an_entry_while_the_queue_is_down_and_queues_it_once_back() {
    let Some((proxy, queue, direct, prefix)) = redis_behind_proxy().await else {
        return;
    };
    let api = TestApi::spawn_with(Options {
        queue: Some(queue),
        outbox: OutboxConfig {
            enqueue_timeout: Duration::from_secs(2),
            // Entries are due at once and a failed claim is retried on the next pass.
            grace: Duration::ZERO,
            relay_interval: Duration::from_secs(3600),
            ..OutboxConfig::default()
        },
        ..Options::default()
    })
    .await;
    let store = api.transcriptions.store().clone();
    let orphan = record("someone");
    store.insert(&orphan, None, 0).await.unwrap();

    proxy.cut();
    assert_eq!(api.transcriptions.relay_once().await.unwrap(), 0);
    assert_eq!(
        store.outbox_len().await.unwrap(),
        1,
        "the entry survives the outage"
    );

    proxy.restore();
    let mut settled = 0;
    for _ in 0..10 {
        settled = api.transcriptions.relay_once().await.unwrap();
        if settled == 1 {
            break;
        }
    }
    assert_eq!(settled, 1);
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    let job = direct
        .reserve(TranscribeJob::QUEUE, "w1", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.envelope.id.as_str(), orphan.id.to_string());
    drop(api);
    delete_prefix(&prefix).await;
}
