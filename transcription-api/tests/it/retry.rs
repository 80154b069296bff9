//! `POST /transcriptions/{id}/retry`: the owner of a transcription that failed for good queues
//! it again as a new attempt, a fresh job through the outbox; on SQLite with the embedded queue
//! and on PostgreSQL with Redis. The worker is played through the queue and the report routes
//! it uses.

use std::sync::Arc;
use std::time::Duration;

use job_queue::{QueueConfig, RedisQueue, Reserved};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use test_support::db::TestDb;
use uuid::Uuid;

use crate::helpers::*;

async fn retry(api: &TestApi, token: &str, id: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = api
        .http
        .post(api.url(&format!("/transcriptions/{id}/retry")))
        .bearer_auth(token);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

async fn record(api: &TestApi, token: &str, id: Uuid) -> Value {
    let response = api.get(token, &format!("/transcriptions/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The next `transcribe` job, as the transcriber would take it.
async fn take_job(api: &TestApi) -> Reserved {
    api.queue
        .heartbeat("retry-test", Duration::from_secs(30))
        .await
        .unwrap();
    api.queue
        .reserve("transcribe", "retry-test", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a transcribe job is queued")
}

async fn report(api: &TestApi, worker: &str, id: Uuid, body: Value) {
    let response = api.report(worker, &id.to_string(), &body).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{body}");
}

/// The contract, against whichever database and queue `api` runs on.
async fn a_failed_transcription_is_retried_and_completes(api: &TestApi) {
    let owner = api.token(&[WRITE, READ]).await;
    let stranger = api.token(&[WRITE, READ]).await;
    let worker = api.token(&[REPORT]).await;
    let id = api.create(&owner).await;

    // Not failed (queued): nothing to retry.
    let early = retry(api, &owner, &id.to_string(), None).await;
    assert_eq!(early.status(), StatusCode::CONFLICT);
    assert_eq!(early.json::<Value>().await.unwrap()["error"], "conflict");

    // The first attempt dies: its job goes to the dead list, where it keeps its id.
    let first = take_job(api).await;
    assert_eq!(first.envelope.id.as_str(), id.to_string());
    report(api, &worker, id, json!({"status": "processing"})).await;
    report(
        api,
        &worker,
        id,
        json!({"status": "failed", "error": "the audio could not be downloaded (timeout)"}),
    )
    .await;
    api.queue.bury(&first, "gave up").await.unwrap();
    let sent = api
        .http
        .put(api.url(&format!("/internal/transcriptions/{id}/notification")))
        .bearer_auth(&worker)
        .json(&json!({"status": "sent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    let failed = record(api, &owner, id).await;
    assert_eq!(
        (failed["status"].as_str(), failed["attempt"].as_u64()),
        (Some("failed"), Some(1))
    );

    // Another owner, an unknown id and a malformed one get the same 404; nothing changes.
    for (token, path_id) in [
        (&stranger, id.to_string()),
        (&owner, Uuid::new_v4().to_string()),
        (&owner, "not-a-uuid".to_owned()),
    ] {
        let response = retry(api, token, &path_id, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path_id}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"],
            "not_found"
        );
    }
    assert_eq!(record(api, &owner, id).await["status"], "failed");
    // Retrying is writing: a read-only token may not.
    let reader = api.token(&[READ]).await;
    assert_eq!(
        retry(api, &reader, &id.to_string(), None).await.status(),
        StatusCode::FORBIDDEN
    );

    // The owner retries: queued again as attempt 2, the result and the notification reset.
    let response = retry(api, &owner, &id.to_string(), Some("retry-1")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        response.headers()[LOCATION],
        format!("/transcriptions/{id}").as_str()
    );
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"id": id.to_string(), "status": "queued"})
    );
    let queued = record(api, &owner, id).await;
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["attempt"], 2);
    assert_eq!(queued["notification"], json!({"status": "pending"}));
    assert!(queued.get("error").is_none(), "{queued}");

    // The same Idempotency-Key replays the answer and queues nothing more.
    let replayed = retry(api, &owner, &id.to_string(), Some("retry-1")).await;
    assert_eq!(replayed.status(), StatusCode::ACCEPTED);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    // The key of a submission is not the key of a retry.
    let submitted_with_key = api
        .http
        .post(api.url("/transcriptions"))
        .bearer_auth(&owner)
        .header("idempotency-key", "retry-1")
        .json(&sample_body())
        .send()
        .await
        .unwrap();
    assert_eq!(
        submitted_with_key.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // A fresh job, although the dead list still holds the first one's id; it completes.
    let second = take_job(api).await;
    assert_eq!(second.envelope.id.as_str(), format!("{id}-attempt-2"));
    assert_eq!(second.envelope.payload["transcription_id"], id.to_string());
    report(api, &worker, id, json!({"status": "processing"})).await;
    report(
        api,
        &worker,
        id,
        json!({"status": "completed", "transcript": "second time lucky"}),
    )
    .await;
    assert!(api.queue.ack(&second).await.unwrap());
    let done = record(api, &owner, id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["transcript"], "second time lucky");
    assert_eq!(done["attempt"], 2);
    let stats = api.queue.stats("transcribe").await.unwrap();
    assert_eq!((stats.ready, stats.dead), (0, 1), "one job per attempt");

    // Completed is final: no retry.
    let late = retry(api, &owner, &id.to_string(), None).await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    let message = late.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("completed"), "{message}");
}

#[tokio::test]
async fn a_failed_transcription_is_retried_and_completes_on_sqlite() {
    let api = TestApi::spawn().await;
    a_failed_transcription_is_retried_and_completes(&api).await;
}

#[tokio::test]
async fn a_failed_transcription_is_retried_and_completes_on_postgres_and_redis() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let Some(url) = test_support::redis::reachable_url().await else {
        return;
    };
    let prefix = format!("api-retry-{}", Uuid::new_v4().simple());
    let queue = RedisQueue::connect(&url, &prefix, signing_key(), QueueConfig::default())
        .await
        .unwrap();
    let api = TestApi::spawn_with(Options {
        database_url: Some(db.url.clone()),
        queue: Some(Arc::new(queue)),
        ..Options::default()
    })
    .await;
    a_failed_transcription_is_retried_and_completes(&api).await;
    drop(api);
    test_support::redis::delete_prefix(&url, &prefix).await;
}

/// A retry whose enqueue did not happen (the queue was down) is queued by the outbox relay,
/// as its new attempt.
#[tokio::test]
async fn the_relay_queues_the_new_attempt() {
    let api = TestApi::spawn().await;
    let owner = api.token(&[WRITE, READ]).await;
    let worker = api.token(&[REPORT]).await;
    let id = api.create(&owner).await;
    let first = take_job(&api).await;
    report(
        &api,
        &worker,
        id,
        json!({"status": "failed", "error": "engine"}),
    )
    .await;
    api.queue.bury(&first, "gave up").await.unwrap();
    // What a crash right after the retry's commit leaves: the record queued on attempt 2 and
    // its outbox entry, due now, and no job.
    let now = time::OffsetDateTime::now_utc();
    let store = api.transcriptions.store().clone();
    let owner_sub = store.get(id).await.unwrap().unwrap().owner;
    let retried = store.retry(&owner_sub, id, None, now, 0).await.unwrap();
    assert!(
        matches!(retried, transcription_api::store::Retried::Queued(ref r) if r.attempt == 2),
        "{retried:?}"
    );
    assert_eq!(api.transcriptions.relay_once().await.unwrap(), 1);
    let job = take_job(&api).await;
    assert_eq!(job.envelope.id.as_str(), format!("{id}-attempt-2"));
}
