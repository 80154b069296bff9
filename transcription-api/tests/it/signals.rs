//! `transcription-api serve` as a supervisor stops it: on SIGTERM and on SIGINT it stops
//! accepting connections, answers the submission it is in the middle of, and exits 0.

use serde_json::Value;
use test_support::auth::TestAuthServer;
use test_support::process::{HeldRequest, ServiceProcess, Signal, wait_until_refused};
use uuid::Uuid;

use crate::helpers::{READ, WRITE};

async fn drains_and_exits_0_on(signal: Signal) {
    let auth = TestAuthServer::spawn().await;
    let token = auth.token(&[WRITE, READ]).await;
    let dir = std::env::temp_dir().join(format!("api-signals-{}", Uuid::new_v4().simple()));
    let mut api = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_transcription-api"),
        &["serve", "--bind", "127.0.0.1:0"],
        &[
            (
                "DATABASE_URL",
                format!("sqlite:{}", dir.join("api.db").display()),
            ),
            (
                "QUEUE_DATABASE_URL",
                format!("sqlite:{}", dir.join("queue.db").display()),
            ),
            ("AUTH_ISSUER", auth.issuer.clone()),
            ("AUTH_JWKS_URL", auth.jwks_url()),
            (
                "JOB_SIGNING_KEY",
                "transcription-api signal tests: 32+ bytes".to_owned(),
            ),
            ("LOG_FORMAT", "json".to_owned()),
        ],
        &dir.join("logs"),
    );
    let addr = api.wait_for_addr("transcription-api listening").await;
    api.wait_healthy(addr).await;

    // A submission whose body the API is waiting for when the signal arrives.
    let in_flight = HeldRequest::start(
        addr,
        "POST",
        "/transcriptions",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        r#"{"email":"drain@example.com","audio_url":"https://cdn.example.com/drain.wav"}"#,
    )
    .await;
    api.signal(signal);
    api.wait_for_log("shutdown signal received").await;
    wait_until_refused(addr).await;
    assert!(
        api.exit_status().is_none(),
        "exited with a request in flight\n{}",
        api.output()
    );

    let answer = in_flight.finish().await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["status"], "queued", "{body}");
    let status = api.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{status}\n{}", api.output());
    drop(api);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn serve_answers_the_submission_in_flight_and_exits_0_on_sigterm() {
    drains_and_exits_0_on(Signal::Term).await;
}

#[tokio::test]
async fn serve_answers_the_submission_in_flight_and_exits_0_on_sigint() {
    drains_and_exits_0_on(Signal::Int).await;
}
