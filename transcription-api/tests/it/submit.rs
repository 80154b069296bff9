//! `POST /transcriptions` and `POST /transcription`: acceptance, the queued job, validation,
//! body limits and idempotency.

use std::time::Duration;

use contracts::jobs::TranscribeJob;

use job_queue::Job;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_json_submission_is_recorded_and_its_job_queued() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE]).await;
    let response = api.submit(&token, &sample_body()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.unwrap();
    assert_eq!(id["status"], "queued");

    let job = api
        .queue
        .reserve(TranscribeJob::QUEUE, "test-worker", Duration::ZERO)
        .await
        .unwrap()
        .expect("a transcribe job is ready");
    assert_eq!(job.envelope.id.as_str(), id["id"].as_str().unwrap());
    assert_eq!(job.envelope.kind, "transcribe");
    assert_eq!(
        job.envelope.payload,
        json!({"transcription_id": id["id"], "audio_url": "https://cdn.example.com/a.wav",
               "email": "ada@example.com"})
    );
    assert_eq!(api.transcriptions.store().outbox_len().await.unwrap(), 0);
}

#[tokio::test]
async fn the_answer_carries_the_location_of_the_record() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE]).await;
    let response = api.submit(&token, &sample_body()).await;
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/transcriptions/{}", body["id"].as_str().unwrap())
    );
}

#[tokio::test]
async fn the_seed_route_and_field_name_are_accepted_as_a_form() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE, READ]).await;
    let response = api
        .http
        .post(api.url("/transcription"))
        .bearer_auth(&token)
        .form(&[
            ("email", "grace@example.com"),
            ("audio-file-url", "http://media.example.org/b.mp3"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record: Value = api
        .get(&token, &format!("/transcriptions/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(record["audio_url"], "http://media.example.org/b.mp3");
    assert_eq!(record["email"], "grace@example.com");
}

#[tokio::test]
async fn invalid_fields_get_422_with_every_message_and_nothing_is_queued() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE]).await;
    let long_url = format!("https://cdn.example.com/{}", "a".repeat(2048));
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({}), &["email", "audio_url"]),
        (
            json!({"email": "not-an-email", "audio_url": "https://x.example/a.wav"}),
            &["email"],
        ),
        (
            json!({"email": "a@example.com", "audio_url": "/relative.wav"}),
            &["audio_url"],
        ),
        (
            json!({"email": "a@example.com", "audio_url": "ftp://x.example/a.wav"}),
            &["audio_url"],
        ),
        (
            json!({"email": "a@example.com", "audio_url": long_url}),
            &["audio_url"],
        ),
        (
            json!({"email": 42, "audio_url": null}),
            &["email", "audio_url"],
        ),
        (
            json!({"email": "a@example.com", "audio_url": "https://u:p@x.example/a.wav"}),
            &["audio_url"],
        ),
    ];
    for (body, fields) in cases {
        let response = api.submit(&token, &body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let errors: Value = response.json().await.unwrap();
        let mut got: Vec<&str> = errors["errors"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = fields.to_vec();
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected, "{body}");
        for field in fields {
            assert!(
                errors["errors"][field][0]
                    .as_str()
                    .unwrap()
                    .starts_with("The "),
                "{errors}"
            );
        }
    }
    assert_eq!(
        api.queue.stats(TranscribeJob::QUEUE).await.unwrap().ready,
        0
    );
}

#[tokio::test]
async fn unreadable_bodies_get_400_or_415_not_500() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE]).await;
    let send = |content_type: &'static str, body: &'static [u8]| {
        api.http
            .post(api.url("/transcriptions"))
            .bearer_auth(&token)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };
    for (content_type, body, status, code) in [
        (
            "application/json",
            &b"{\"email\":"[..],
            400,
            "invalid_request",
        ),
        ("application/json", b"[]", 400, "invalid_request"),
        ("application/json", b"\xff\xfe\x00", 400, "invalid_request"),
        (
            "application/x-www-form-urlencoded",
            b"email=%FF%FE",
            400,
            "invalid_request",
        ),
        (
            "text/plain",
            b"email=a@example.com",
            415,
            "unsupported_media_type",
        ),
        (
            "multipart/form-data; boundary=x",
            b"--x--",
            415,
            "unsupported_media_type",
        ),
    ] {
        let response = send(content_type, body).await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            status,
            "{content_type} {body:?}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], code);
    }
}

#[tokio::test]
async fn a_body_over_64_kib_gets_413() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE]).await;
    let padding = "x".repeat(64 * 1024);
    let body =
        json!({"email": "a@example.com", "audio_url": "https://x.example/a.wav", "pad": padding});
    let response = api.submit(&token, &body).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "payload_too_large"
    );
    assert_eq!(
        api.queue.stats(TranscribeJob::QUEUE).await.unwrap().ready,
        0
    );
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_give_the_same_answer_once() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE]).await;
    let send = |key: &'static str, body: Value| {
        api.http
            .post(api.url("/transcriptions"))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first = send("order-7", sample_body()).await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_location = first.headers()[LOCATION].clone();
    let first: Value = first.json().await.unwrap();

    let again = send("order-7", sample_body()).await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()[LOCATION], first_location);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(
        api.queue.stats(TranscribeJob::QUEUE).await.unwrap().ready,
        1
    );

    let other_body =
        json!({"email": "ada@example.com", "audio_url": "https://cdn.example.com/other.wav"});
    let reused = send("order-7", other_body).await.unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let errors: Value = reused.json().await.unwrap();
    assert!(
        errors["errors"]["idempotency_key"][0]
            .as_str()
            .unwrap()
            .contains("different request")
    );

    let fresh = send("order-8", sample_body()).await.unwrap();
    assert_eq!(fresh.status(), StatusCode::ACCEPTED);
    assert_ne!(fresh.json::<Value>().await.unwrap()["id"], first["id"]);
    assert_eq!(
        api.queue.stats(TranscribeJob::QUEUE).await.unwrap().ready,
        2
    );
}

#[tokio::test]
async fn idempotency_keys_are_per_caller_and_concurrent_repeats_create_one_record_or_get_409() {
    let api = TestApi::spawn().await;
    let alice = api.token(&[WRITE]).await;
    let bob = api.token(&[WRITE]).await;
    let send = |token: String| {
        let request = api
            .http
            .post(api.url("/transcriptions"))
            .bearer_auth(token)
            .header("Idempotency-Key", "same-key")
            .json(&sample_body());
        async move { request.send().await.unwrap() }
    };
    let answers = futures_join(vec![
        send(alice.clone()),
        send(alice.clone()),
        send(alice.clone()),
        send(alice.clone()),
        send(bob.clone()),
    ])
    .await;
    // A repeat that arrives while the first request is in flight gets 409 with Retry-After
    // (IETF Idempotency-Key draft, section 2.6); one that arrives after it answered, its result.
    let mut ids = Vec::new();
    let mut created = 0;
    for (i, response) in answers.into_iter().enumerate() {
        if i < 4 && response.status() == StatusCode::CONFLICT {
            assert!(response.headers().contains_key(RETRY_AFTER));
            assert_eq!(response.json::<Value>().await.unwrap()["error"], "conflict");
            continue;
        }
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        if i < 4 && !response.headers().contains_key("idempotent-replayed") {
            created += 1;
        }
        ids.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(created, 1, "one of alice's requests created the record");
    let bob_id = ids.pop().unwrap();
    let replay = send(alice.clone()).await;
    assert_eq!(replay.status(), StatusCode::ACCEPTED, "settled: replayed");
    let alice_id = replay.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ids.iter().all(|id| id == &alice_id), "{ids:?}");
    assert_ne!(bob_id, alice_id);
    assert_eq!(
        api.queue.stats(TranscribeJob::QUEUE).await.unwrap().ready,
        2
    );
}

#[tokio::test]
async fn a_malformed_idempotency_key_gets_400() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE]).await;
    let response = api
        .http
        .post(api.url("/transcriptions"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "k".repeat(256))
        .json(&sample_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        api.queue.stats(TranscribeJob::QUEUE).await.unwrap().ready,
        0
    );
}

/// Runs the futures concurrently on the test's runtime and returns their outputs in order.
async fn futures_join<F: std::future::Future + Send + 'static>(futures: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}
