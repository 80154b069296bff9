//! Ambiguous or unmailable input (issue 12, kinds 2 and 6): a field given twice in JSON gets
//! 422 naming it as in a form, a repeated `Idempotency-Key` gets 400, and only addresses the
//! mailer's own parser takes are accepted.

use contracts::jobs::TranscribeJob;

use job_queue::Job;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_field_given_twice_gets_422_naming_it_and_nothing_is_queued() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE]).await;
    for (content_type, body, field) in [
        (
            "application/json",
            r#"{"email":"first@example.com","email":"second@example.com","audio_url":"https://cdn.example.com/a.wav"}"#,
            "email",
        ),
        (
            "application/json",
            r#"{"email":"a@example.com","audio_url":"https://cdn.example.com/a.wav","audio_url":"https://cdn.example.com/b.wav"}"#,
            "audio_url",
        ),
        (
            "application/json",
            r#"{"email":"a@example.com","email":"a@example.com","audio_url":"https://cdn.example.com/a.wav"}"#,
            "email",
        ),
        (
            "application/x-www-form-urlencoded",
            "email=first%40example.com&email=second%40example.com&audio_url=https%3A%2F%2Fcdn.example.com%2Fa.wav",
            "email",
        ),
    ] {
        let response = api
            .http
            .post(api.url("/transcriptions"))
            .bearer_auth(&token)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let errors: Value = response.json().await.unwrap();
        let label = field.replace('_', " ");
        assert_eq!(
            errors["errors"][field],
            json!([format!("The {label} field must be given once.")]),
            "{body}: {errors}"
        );
    }
    assert_eq!(
        api.queue.stats(TranscribeJob::QUEUE).await.unwrap().ready,
        0
    );
}

#[tokio::test]
async fn a_report_with_a_field_given_twice_gets_422_and_changes_nothing() {
    let api = TestApi::spawn().await;
    let user = api.token(&[WRITE, READ]).await;
    let worker = api.token(&[REPORT]).await;
    let id = api.create(&user).await;
    let response = api
        .http
        .put(api.url(&format!("/internal/transcriptions/{id}/result")))
        .bearer_auth(&worker)
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"status":"completed","transcript":"one","transcript":"two"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let errors: Value = response.json().await.unwrap();
    assert_eq!(
        errors["errors"]["transcript"],
        json!(["The transcript field must be given once."])
    );
    let record: Value = api
        .get(&user, &format!("/transcriptions/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(record["status"], "queued");
}

#[tokio::test]
async fn a_repeated_idempotency_key_gets_400_and_nothing_is_queued() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE]).await;
    for (first, second) in [("k1", "k2"), ("k1", "k1")] {
        let response = api
            .http
            .post(api.url("/transcriptions"))
            .bearer_auth(&token)
            .header("Idempotency-Key", first)
            .header("Idempotency-Key", second)
            .json(&sample_body())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{first} {second}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_request");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{error}"
        );
    }
    assert_eq!(
        api.queue.stats(TranscribeJob::QUEUE).await.unwrap().ready,
        0
    );
    // One key is still fine.
    let response = api
        .http
        .post(api.url("/transcriptions"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "k1")
        .json(&sample_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn only_addresses_the_mailer_accepts_are_taken() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE]).await;
    for (email, status) in [
        ("a..b@example.com", StatusCode::UNPROCESSABLE_ENTITY),
        (".a@example.com", StatusCode::UNPROCESSABLE_ENTITY),
        ("a.@example.com", StatusCode::UNPROCESSABLE_ENTITY),
        ("a@[127.0.0.1]", StatusCode::UNPROCESSABLE_ENTITY),
        ("first.last+tag@sub.example.co.uk", StatusCode::ACCEPTED),
        ("o'brien@example.com", StatusCode::ACCEPTED),
    ] {
        let body = json!({"email": email, "audio_url": "https://cdn.example.com/a.wav"});
        let response = api.submit(&token, &body).await;
        assert_eq!(response.status(), status, "{email}");
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            let errors: Value = response.json().await.unwrap();
            assert!(errors["errors"]["email"].is_array(), "{email}: {errors}");
        }
    }
    assert_eq!(
        api.queue.stats(TranscribeJob::QUEUE).await.unwrap().ready,
        2
    );
}
