//! `PUT /internal/transcriptions/{id}/result`: the worker's reports and their state rules.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn progress_and_result_reach_the_owner() {
    let api = TestApi::spawn().await;
    let user = api.token(&[WRITE, READ]).await;
    let worker = api.token(&[REPORT]).await;
    let id = api.create(&user).await.to_string();
    let path = format!("/transcriptions/{id}");

    assert_eq!(
        api.report(&worker, &id, &json!({"status": "processing"}))
            .await
            .status(),
        204
    );
    let record: Value = api.get(&user, &path).await.json().await.unwrap();
    assert_eq!(record["status"], "processing");

    let done = json!({"status": "completed", "transcript": "hello world"});
    assert_eq!(api.report(&worker, &id, &done).await.status(), 204);
    let record: Value = api.get(&user, &path).await.json().await.unwrap();
    assert_eq!(record["status"], "completed");
    assert_eq!(record["transcript"], "hello world");
    assert!(record.get("error").is_none());

    // The worker retries after a lost answer: the identical report is accepted again.
    assert_eq!(api.report(&worker, &id, &done).await.status(), 204);
}

#[tokio::test]
async fn a_final_result_cannot_be_changed_or_moved_back() {
    let api = TestApi::spawn().await;
    let user = api.token(&[WRITE, READ]).await;
    let worker = api.token(&[REPORT]).await;
    let id = api.create(&user).await.to_string();
    let failed = json!({"status": "failed", "error": "audio could not be decoded"});
    assert_eq!(api.report(&worker, &id, &failed).await.status(), 204);
    for report in [
        json!({"status": "failed", "error": "something else"}),
        json!({"status": "completed", "transcript": "late"}),
        json!({"status": "processing"}),
    ] {
        let response = api.report(&worker, &id, &report).await;
        assert_eq!(response.status(), StatusCode::CONFLICT, "{report}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "conflict");
    }
    let record: Value = api
        .get(&user, &format!("/transcriptions/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"], "audio could not be decoded");
}

#[tokio::test]
async fn reports_on_unknown_ids_and_bad_reports_are_refused() {
    let api = TestApi::spawn().await;
    let user = api.token(&[WRITE]).await;
    let worker = api.token(&[REPORT]).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let response = api
        .report(&worker, &unknown, &json!({"status": "processing"}))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let id = api.create(&user).await.to_string();
    for (body, field) in [
        (json!({}), "status"),
        (json!({"status": "done"}), "status"),
        (json!({"status": "completed"}), "transcript"),
        (json!({"status": "failed"}), "error"),
        (
            json!({"status": "failed", "error": "x".repeat(5000)}),
            "error",
        ),
    ] {
        let response = api.report(&worker, &id, &body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let errors: Value = response.json().await.unwrap();
        assert!(errors["errors"][field].is_array(), "{body}: {errors}");
    }
    let form = api
        .http
        .put(api.url(&format!("/internal/transcriptions/{id}/result")))
        .bearer_auth(&worker)
        .form(&[("status", "processing")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn only_report_tokens_may_report() {
    let api = TestApi::spawn().await;
    let user = api.token(&[WRITE, READ]).await;
    let id = api.create(&user).await.to_string();
    let response = api
        .report(
            &user,
            &id,
            &json!({"status": "completed", "transcript": "forged"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("transcriptions:report"),
        "{challenge}"
    );
}
