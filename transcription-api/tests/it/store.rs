//! One conformance suite for both storage backends, and the whole API once on PostgreSQL.

use std::sync::Arc;

use contracts::report::ResultReport;
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::db::TestDb;
use time::OffsetDateTime;
use transcription_api::store::{
    self, EarlierRequest, IdempotencyKey, Inserted, Notification, NotificationOutcome,
    ReportOutcome, Retried, Status, Transcription, TranscriptionStore,
};
use uuid::Uuid;

use crate::helpers::*;

async fn conformance(store: Arc<dyn TranscriptionStore>) {
    store.migrate().await.unwrap();
    store.migrate().await.unwrap(); // idempotent
    store.ping().await.unwrap();

    // Insert and read back.
    let first = record("alice");
    assert_eq!(
        store.insert(&first, None, 0).await.unwrap(),
        Inserted::Created
    );
    let read = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(
        (read.id, read.owner.as_str(), read.status),
        (first.id, "alice", Status::Queued)
    );
    assert_eq!(
        read.created_at.unix_timestamp(),
        first.created_at.unix_timestamp()
    );
    assert!(store.get(Uuid::new_v4()).await.unwrap().is_none());

    // Idempotency keys: replay with the same hash, refuse another, scoped per owner.
    let key = |owner: &str, hash: &str| IdempotencyKey {
        owner: owner.to_owned(),
        key: "k1".to_owned(),
        request_hash: hash.to_owned(),
        in_flight_until_ms: 5,
    };
    let keyed = record("alice");
    assert_eq!(
        store
            .insert(&keyed, Some(&key("alice", "h1")), 0)
            .await
            .unwrap(),
        Inserted::Created
    );
    assert_eq!(
        store
            .insert(&record("alice"), Some(&key("alice", "h1")), 0)
            .await
            .unwrap(),
        Inserted::Replayed(EarlierRequest {
            transcription_id: keyed.id,
            same_request: true,
            in_flight_until_ms: 5,
        })
    );
    assert_eq!(
        store
            .insert(&record("alice"), Some(&key("alice", "h2")), 0)
            .await
            .unwrap(),
        Inserted::Replayed(EarlierRequest {
            transcription_id: keyed.id,
            same_request: false,
            in_flight_until_ms: 5,
        })
    );
    assert_eq!(
        store
            .insert(&record("bob"), Some(&key("bob", "h1")), 0)
            .await
            .unwrap(),
        Inserted::Created
    );

    // A settled key replays as final.
    store.settle_idempotency_key("alice", "k1").await.unwrap();
    assert_eq!(
        store
            .insert(&record("alice"), Some(&key("alice", "h1")), 0)
            .await
            .unwrap(),
        Inserted::Replayed(EarlierRequest {
            transcription_id: keyed.id,
            same_request: true,
            in_flight_until_ms: 0,
        })
    );

    // Outbox: claim due entries once, settle them, make one due again at once.
    assert_eq!(store.outbox_len().await.unwrap(), 3);
    let claimed = store.claim_outbox(10, 1_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(
        store.claim_outbox(10, 1_000, 10).await.unwrap().is_empty(),
        "leased"
    );
    assert_eq!(
        store.claim_outbox(1_000, 2_000, 1).await.unwrap().len(),
        1,
        "lease over; limit 1"
    );
    store.outbox_done(first.id).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 2);
    assert_eq!(
        store.claim_outbox(10_000, 20_000, 10).await.unwrap().len(),
        2
    );
    assert!(
        store
            .claim_outbox(15_000, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.outbox_due(keyed.id, 15_000).await.unwrap();
    let due = store.claim_outbox(15_000, 30_000, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|e| e.transcription_id).collect::<Vec<_>>(),
        [keyed.id]
    );

    // Reports follow queued → processing → final, and repeats are recognised.
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        store
            .report(first.id, &ResultReport::Processing, now)
            .await
            .unwrap(),
        ReportOutcome::Applied
    );
    assert_eq!(
        store
            .report(first.id, &ResultReport::Processing, now)
            .await
            .unwrap(),
        ReportOutcome::Unchanged
    );
    let done = ResultReport::Completed {
        transcript: "hi".into(),
    };
    assert_eq!(
        store.report(first.id, &done, now).await.unwrap(),
        ReportOutcome::Applied
    );
    assert_eq!(
        store.report(first.id, &done, now).await.unwrap(),
        ReportOutcome::Unchanged
    );
    assert_eq!(
        store
            .report(
                first.id,
                &ResultReport::Completed {
                    transcript: "other".into()
                },
                now
            )
            .await
            .unwrap(),
        ReportOutcome::Conflict(Status::Completed)
    );
    assert_eq!(
        store
            .report(first.id, &ResultReport::Processing, now)
            .await
            .unwrap(),
        ReportOutcome::Conflict(Status::Completed)
    );
    assert_eq!(
        store.report(Uuid::new_v4(), &done, now).await.unwrap(),
        ReportOutcome::NotFound
    );
    let read = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(
        (read.status, read.transcript.as_deref()),
        (Status::Completed, Some("hi"))
    );

    // The notification: pending at creation, then one final state; repeats recognised.
    assert_eq!(read.notification, Notification::Pending);
    let failed = Notification::Failed {
        reason: "550 no such user".into(),
    };
    assert_eq!(
        store
            .report_notification(first.id, &failed, now)
            .await
            .unwrap(),
        NotificationOutcome::Applied
    );
    assert_eq!(
        store
            .report_notification(first.id, &failed, now)
            .await
            .unwrap(),
        NotificationOutcome::Unchanged
    );
    assert_eq!(
        store
            .report_notification(first.id, &Notification::Sent, now)
            .await
            .unwrap(),
        NotificationOutcome::Conflict(failed.clone())
    );
    assert_eq!(
        store
            .report_notification(Uuid::new_v4(), &Notification::Sent, now)
            .await
            .unwrap(),
        NotificationOutcome::NotFound
    );
    let read = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(
        (read.status, read.notification),
        (Status::Completed, failed)
    );

    // Pages: newest first, per owner, with a cursor.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let t = record("carol");
        store.insert(&t, None, 0).await.unwrap();
        ids.push(t.id);
    }
    ids.reverse();
    let page = store.list("carol", None, 2).await.unwrap().unwrap();
    assert_eq!(
        page.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        ids[..2]
    );
    assert_eq!(
        page.next_cursor,
        Some(ids[1]),
        "the cursor is the owner's own last item"
    );
    assert_eq!(
        store.list("dave", page.next_cursor, 2).await.unwrap(),
        None,
        "another owner's position is no cursor"
    );
    assert_eq!(
        store.list("carol", Some(Uuid::new_v4()), 2).await.unwrap(),
        None
    );
    let rest = store
        .list("carol", page.next_cursor, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        ids[2..]
    );
    assert_eq!(rest.next_cursor, None);
    assert!(
        store
            .list("nobody", None, 10)
            .await
            .unwrap()
            .unwrap()
            .items
            .is_empty()
    );

    // Records queued too long without an outbox entry go back into it, once per period.
    store.outbox_done(keyed.id).await.unwrap();
    let now_ms =
        i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap();
    let before = store.outbox_len().await.unwrap();
    assert_eq!(
        store
            .requeue_stale(now_ms - 60_000, now_ms, 100)
            .await
            .unwrap(),
        0,
        "nothing queued for a minute yet"
    );
    let stale = store
        .requeue_stale(now_ms + 60_000, now_ms, 100)
        .await
        .unwrap();
    assert!(stale >= 1, "keyed is queued and has no entry");
    assert_eq!(store.outbox_len().await.unwrap(), before + stale);
    let entries = store.claim_outbox(now_ms, now_ms + 1, 100).await.unwrap();
    assert!(entries.iter().any(|e| e.transcription_id == keyed.id));
    assert!(
        entries.iter().all(|e| e.transcription_id != first.id),
        "a completed record is not requeued"
    );
    assert_eq!(
        store
            .requeue_stale(now_ms - 1, now_ms + 2, 100)
            .await
            .unwrap(),
        0,
        "handed over again at now_ms: not stale before it"
    );

    // A failed record is retried by its owner as its next attempt, once; nothing else is.
    let failing = record("erin");
    store.insert(&failing, None, 0).await.unwrap();
    store.outbox_done(failing.id).await.unwrap();
    assert_eq!(
        store.retry("erin", failing.id, None, now, 7).await.unwrap(),
        Retried::NotFailed(Status::Queued)
    );
    let error = ResultReport::Failed {
        error: "boom".into(),
    };
    store.report(failing.id, &error, now).await.unwrap();
    store
        .report_notification(failing.id, &Notification::Sent, now)
        .await
        .unwrap();
    assert_eq!(
        store
            .retry("mallory", failing.id, None, now, 7)
            .await
            .unwrap(),
        Retried::NotFound
    );
    assert_eq!(
        store
            .retry("erin", Uuid::new_v4(), None, now, 7)
            .await
            .unwrap(),
        Retried::NotFound
    );
    let retry_key = IdempotencyKey {
        owner: "erin".to_owned(),
        key: "r1".to_owned(),
        request_hash: "retry".to_owned(),
        in_flight_until_ms: 0,
    };
    let Retried::Queued(again) = store
        .retry("erin", failing.id, Some(&retry_key), now, 7)
        .await
        .unwrap()
    else {
        panic!("the failed record is queued again");
    };
    assert_eq!(
        (
            again.status,
            again.attempt,
            again.error.as_deref(),
            &again.notification
        ),
        (Status::Queued, 2, None, &Notification::Pending)
    );
    assert_eq!(store.get(failing.id).await.unwrap().unwrap(), again);
    let entries = store.claim_outbox(7, 8, 100).await.unwrap();
    let entry = entries
        .iter()
        .find(|e| e.transcription_id == failing.id)
        .expect("a fresh outbox entry");
    assert_eq!(entry.attempt, 2);
    assert_eq!(
        store
            .retry("erin", failing.id, Some(&retry_key), now, 7)
            .await
            .unwrap(),
        Retried::Replayed(EarlierRequest {
            transcription_id: failing.id,
            same_request: true,
            in_flight_until_ms: 0,
        })
    );
    assert_eq!(
        store.retry("erin", failing.id, None, now, 7).await.unwrap(),
        Retried::NotFailed(Status::Queued)
    );

    // A purge forgets the keys created strictly before its cutoff and keeps one created at it
    // (and every key created since).
    let an_hour_ago = (OffsetDateTime::now_utc() - time::Duration::hours(1))
        .replace_nanosecond(0)
        .unwrap();
    let old = IdempotencyKey {
        owner: "dave".to_owned(),
        key: "old".to_owned(),
        request_hash: "h".to_owned(),
        in_flight_until_ms: 0,
    };
    let old_record = Transcription {
        created_at: an_hour_ago,
        updated_at: an_hour_ago,
        ..record("dave")
    };
    assert_eq!(
        store.insert(&old_record, Some(&old), 0).await.unwrap(),
        Inserted::Created
    );
    let created_ms = an_hour_ago.unix_timestamp() * 1000;
    assert_eq!(
        store.purge_idempotency_keys(created_ms).await.unwrap(),
        0,
        "created at the cutoff: kept"
    );
    assert_eq!(
        store.purge_idempotency_keys(created_ms + 1).await.unwrap(),
        1,
        "created before the cutoff: forgotten, and only it"
    );
    assert_eq!(
        store.insert(&record("dave"), Some(&old), 0).await.unwrap(),
        Inserted::Created,
        "a forgotten key is free again"
    );
    assert!(
        matches!(
            store
                .insert(&record("alice"), Some(&key("alice", "h1")), 0)
                .await
                .unwrap(),
            Inserted::Replayed(EarlierRequest { transcription_id, .. }) if transcription_id == keyed.id
        ),
        "a newer key is kept"
    );
}

#[tokio::test]
async fn sqlite_store_conformance() {
    let db = TestDb::sqlite();
    conformance(store::connect(&db.url).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_store_conformance() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    conformance(store::connect(&db.url).await.unwrap()).await;
}

#[tokio::test]
async fn the_api_works_on_postgres_next_to_the_auth_servers_tables() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // The auth server's migrations first, in the same database (as the stack does).
    auth_server::store::connect(&db.url)
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let api = TestApi::spawn_with(Options {
        database_url: Some(db.url.clone()),
        ..Options::default()
    })
    .await;
    auth_server::store::connect(&db.url)
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let token = api.token(&[WRITE, READ]).await;
    let worker = api.token(&[REPORT]).await;
    let id = api.create(&token).await.to_string();
    let report = json!({"status": "completed", "transcript": "on postgres"});
    assert_eq!(
        api.report(&worker, &id, &report).await.status(),
        StatusCode::NO_CONTENT
    );
    let record: Value = api
        .get(&token, &format!("/transcriptions/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(record["transcript"], "on postgres");
    let page: Value = api
        .get(&token, "/transcriptions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
}
