//! `Idempotency-Key`s are remembered 24 h (README): after a pass of the outbox relay, which
//! purges old keys, a key created a minute less than 24 h ago still names its transcription
//! and one created a minute more than 24 h ago is free again. On SQLite and PostgreSQL.

use test_support::db::TestDb;
use time::{Duration, OffsetDateTime};
use transcription_api::store::{EarlierRequest, IdempotencyKey, Inserted, Transcription};

use crate::helpers::{Options, TestApi, record};

fn key(name: &str) -> IdempotencyKey {
    IdempotencyKey {
        owner: "erin".to_owned(),
        key: name.to_owned(),
        request_hash: "h".to_owned(),
        in_flight_until_ms: 0,
    }
}

fn created_at(at: OffsetDateTime) -> Transcription {
    Transcription {
        created_at: at,
        updated_at: at,
        ..record("erin")
    }
}

async fn keys_are_remembered_24_hours(api: TestApi) {
    let store = api.transcriptions.store();
    let now = OffsetDateTime::now_utc();
    let day = Duration::hours(24);
    // Outbox entries due far in the future: the relay pass only purges.
    let never = i64::MAX;
    let inside = created_at(now - day + Duration::minutes(1));
    let outside = created_at(now - day - Duration::minutes(1));
    for (transcription, name) in [(&inside, "inside"), (&outside, "outside")] {
        assert_eq!(
            store
                .insert(transcription, Some(&key(name)), never)
                .await
                .unwrap(),
            Inserted::Created
        );
    }

    api.transcriptions.relay_once().await.unwrap();

    let again = store
        .insert(&record("erin"), Some(&key("inside")), never)
        .await
        .unwrap();
    assert!(
        matches!(again, Inserted::Replayed(EarlierRequest { transcription_id, .. }) if transcription_id == inside.id),
        "a key 23 h 59 min old is remembered: {again:?}"
    );
    assert_eq!(
        store
            .insert(&record("erin"), Some(&key("outside")), never)
            .await
            .unwrap(),
        Inserted::Created,
        "a key 24 h 1 min old is forgotten"
    );
}

#[tokio::test]
async fn keys_are_remembered_24_hours_on_sqlite() {
    keys_are_remembered_24_hours(TestApi::spawn().await).await;
}

#[tokio::test]
async fn keys_are_remembered_24_hours_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let api = TestApi::spawn_with(Options {
        database_url: Some(db.url.clone()),
        ..Options::default()
    })
    .await;
    keys_are_remembered_24_hours(api).await;
}
