//! `auth-server serve` as a supervisor stops it (README: "SIGINT/SIGTERM drain in-flight
//! requests and exit"): on SIGTERM and on SIGINT it stops accepting connections, answers the
//! token request it is in the middle of, and exits 0.

use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::Value;
use test_support::process::{HeldRequest, ServiceProcess, Signal, wait_until_refused};

use crate::helpers::TestDb;

/// Runs an admin command of the binary against `db`; its JSON output.
fn admin(db: &TestDb, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .args(args)
        .arg("--json")
        .env("DATABASE_URL", &db.url)
        .env("AUTH_SECRETS", db.auth_secrets())
        .env_remove("CLIENT_SECRET_PEPPER")
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn drains_and_exits_0_on(signal: Signal) {
    let db = TestDb::sqlite();
    admin(&db, &["scopes", "create", "signals:test"]);
    let client = admin(
        &db,
        &[
            "clients",
            "create",
            "--name",
            "signals",
            "--scopes",
            "signals:test",
        ],
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        client["client_id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap()
    ));

    let mut server = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_auth-server"),
        &["serve", "--bind", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", db.url.clone()),
            ("AUTH_SECRETS", db.auth_secrets().to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
        ],
        &db.dir.join("logs"),
    );
    let addr = server.wait_for_addr("auth-server listening").await;
    server.wait_healthy(addr).await;

    // A token request whose body the server is waiting for when the signal arrives.
    let in_flight = HeldRequest::start(
        addr,
        "POST",
        "/oauth/token",
        &[
            ("Authorization", &format!("Basic {basic}")),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "grant_type=client_credentials",
    )
    .await;
    server.signal(signal);
    server.wait_for_log("shutdown signal received").await;
    wait_until_refused(addr).await;
    assert!(
        server.exit_status().is_none(),
        "exited with a request in flight\n{}",
        server.output()
    );

    let answer = in_flight.finish().await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert!(body["access_token"].is_string(), "{body}");
    let status = server.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.output());
}

#[tokio::test]
async fn serve_answers_the_request_in_flight_and_exits_0_on_sigterm() {
    drains_and_exits_0_on(Signal::Term).await;
}

#[tokio::test]
async fn serve_answers_the_request_in_flight_and_exits_0_on_sigint() {
    drains_and_exits_0_on(Signal::Int).await;
}
