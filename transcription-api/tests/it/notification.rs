//! The `notification` of a transcription (issue 12, kind 2): `pending` at creation, reported by
//! the notifier with `PUT /internal/transcriptions/{id}/notification`, final once `sent` or
//! `failed`; on SQLite and on PostgreSQL.

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use test_support::db::TestDb;

use crate::helpers::*;

async fn notify(api: &TestApi, token: &str, id: &str, body: &Value) -> reqwest::Response {
    api.http
        .put(api.url(&format!("/internal/transcriptions/{id}/notification")))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn record(api: &TestApi, token: &str, id: &str) -> Value {
    let response = api.get(token, &format!("/transcriptions/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The whole contract, against whichever database `api` runs on.
async fn the_notification_goes_from_pending_to_one_final_state(api: &TestApi) {
    let user = api.token(&[WRITE, READ]).await;
    let notifier = api.token(&[REPORT]).await;

    // Pending at creation, in the record and in the list.
    let sent_id = api.create(&user).await.to_string();
    assert_eq!(
        record(api, &user, &sent_id).await["notification"],
        json!({"status": "pending"})
    );
    let page: Value = api
        .get(&user, "/transcriptions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["data"][0]["notification"],
        json!({"status": "pending"})
    );

    // Sent: 204, and 204 again for the identical repeat; then nothing else.
    let sent = json!({"status": "sent"});
    assert_eq!(
        notify(api, &notifier, &sent_id, &sent).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        notify(api, &notifier, &sent_id, &sent).await.status(),
        StatusCode::NO_CONTENT
    );
    let response = notify(
        api,
        &notifier,
        &sent_id,
        &json!({"status": "failed", "reason": "late"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "conflict");
    assert_eq!(
        record(api, &user, &sent_id).await["notification"],
        json!({"status": "sent"})
    );

    // Failed with its reason, shown to the owner; the same reason again is a repeat, another
    // reason or `sent` a conflict.
    let failed_id = api.create(&user).await.to_string();
    let failed = json!({"status": "failed", "reason": "550 5.1.1 mailbox unavailable"});
    assert_eq!(
        notify(api, &notifier, &failed_id, &failed).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        notify(api, &notifier, &failed_id, &failed).await.status(),
        StatusCode::NO_CONTENT
    );
    for other in [
        json!({"status": "failed", "reason": "another reason"}),
        json!({"status": "sent"}),
    ] {
        assert_eq!(
            notify(api, &notifier, &failed_id, &other).await.status(),
            StatusCode::CONFLICT,
            "{other}"
        );
    }
    let shown = record(api, &user, &failed_id).await;
    assert_eq!(shown["notification"], failed);
    // The notification is its own field: the transcription's status is untouched.
    assert_eq!(shown["status"], "queued");

    // Unknown ids.
    for unknown in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned()] {
        assert_eq!(
            notify(api, &notifier, &unknown, &sent).await.status(),
            StatusCode::NOT_FOUND,
            "{unknown}"
        );
    }
}

#[tokio::test]
async fn the_notification_goes_from_pending_to_one_final_state_on_sqlite() {
    let api = TestApi::spawn().await;
    the_notification_goes_from_pending_to_one_final_state(&api).await;
}

#[tokio::test]
async fn the_notification_goes_from_pending_to_one_final_state_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let api = TestApi::spawn_with(Options {
        database_url: Some(db.url.clone()),
        ..Options::default()
    })
    .await;
    the_notification_goes_from_pending_to_one_final_state(&api).await;
}

#[tokio::test]
async fn bad_notification_reports_get_422_or_415_and_change_nothing() {
    let api = TestApi::spawn().await;
    let user = api.token(&[WRITE, READ]).await;
    let notifier = api.token(&[REPORT]).await;
    let id = api.create(&user).await.to_string();
    for (body, field) in [
        (json!({}), "status"),
        (json!({"status": "pending"}), "status"),
        (json!({"status": "delivered"}), "status"),
        (json!({"status": "failed"}), "reason"),
        (json!({"status": "failed", "reason": " "}), "reason"),
        (json!({"status": "failed", "reason": "a\u{0}b"}), "reason"),
        (
            json!({"status": "failed", "reason": "x".repeat(5000)}),
            "reason",
        ),
    ] {
        let response = notify(&api, &notifier, &id, &body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let errors: Value = response.json().await.unwrap();
        assert!(errors["errors"][field].is_array(), "{body}: {errors}");
    }
    let url = api.url(&format!("/internal/transcriptions/{id}/notification"));
    let repeated = api
        .http
        .put(&url)
        .bearer_auth(&notifier)
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"status":"sent","status":"failed","reason":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(repeated.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        repeated.json::<Value>().await.unwrap()["errors"]["status"],
        json!(["The status field must be given once."])
    );
    let form = api
        .http
        .put(&url)
        .bearer_auth(&notifier)
        .form(&[("status", "sent")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        record(&api, &user, &id).await["notification"],
        json!({"status": "pending"})
    );
}

#[tokio::test]
async fn only_report_tokens_may_report_a_notification() {
    let api = TestApi::spawn().await;
    let user = api.token(&[WRITE, READ]).await;
    let id = api.create(&user).await.to_string();
    let response = notify(&api, &user, &id, &json!({"status": "sent"})).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let anonymous = api
        .http
        .put(api.url(&format!("/internal/transcriptions/{id}/notification")))
        .json(&json!({"status": "sent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        record(&api, &user, &id).await["notification"],
        json!({"status": "pending"})
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_notification_from_its_type() {
    let api = TestApi::spawn().await;
    let spec: Value = api
        .http
        .get(api.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let route = &spec["paths"]["/internal/transcriptions/{id}/notification"]["put"];
    assert!(route.is_object(), "{spec}");
    assert!(route["responses"]["409"].is_object());
    let view = &spec["components"]["schemas"]["TranscriptionView"];
    assert_eq!(
        view["properties"]["notification"]["$ref"],
        "#/components/schemas/Notification"
    );
    assert!(
        view["required"]
            .as_array()
            .unwrap()
            .contains(&json!("notification"))
    );
    let schema = spec["components"]["schemas"]["Notification"].to_string();
    for word in ["pending", "sent", "failed", "reason"] {
        assert!(schema.contains(word), "{word}: {schema}");
    }
}
