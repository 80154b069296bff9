//! The admin CLI as an operator runs it: exit codes, text and `--json` output.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::helpers::{TestApp, TestDb};

fn run(db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("KEYS_DIR", db.keys_dir())
        .env_remove("CLIENT_SECRET_PEPPER")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn assert_failure(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.trim().is_empty());
    if code == 1 {
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "one line on stderr: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_client_registered_from_the_cli_gets_a_token() {
    let app = TestApp::sqlite().await;
    let db = &app.db;
    json(&run(
        db,
        &[
            "scopes",
            "create",
            "transcriptions:write",
            "--description",
            "submit",
            "--json",
        ],
    ));
    let created = json(&run(
        db,
        &[
            "clients",
            "create",
            "--name",
            "gateway",
            "--scopes",
            "transcriptions:write",
            "--json",
        ],
    ));
    let id = created["client_id"].as_str().unwrap();
    let secret = created["client_secret"].as_str().unwrap();
    assert!(secret.len() >= 43, "≥ 256 bits of secret");

    let response = app
        .token(&[("grant_type", "client_credentials")], Some((id, secret)))
        .await;
    assert_eq!(response.status(), 200);

    let shown = json(&run(db, &["clients", "show", id, "--json"]));
    assert_eq!(shown["name"], "gateway");
    assert_eq!(shown["scopes"], serde_json::json!(["transcriptions:write"]));
    assert_eq!(
        shown["grant_types"],
        serde_json::json!(["client_credentials"])
    );
    assert!(shown.get("client_secret").is_none() && shown.get("secret_hash").is_none());
    let listed = json(&run(db, &["clients", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let rotated = json(&run(db, &["clients", "rotate-secret", id, "--json"]));
    let new_secret = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert_eq!(
        json(&run(db, &["clients", "disable", id, "--json"]))["disabled"],
        true
    );
    assert_eq!(
        json(&run(db, &["clients", "enable", id, "--json"]))["disabled"],
        false
    );
    json(&run(db, &["clients", "delete", id, "--json"]));
    assert_failure(&run(db, &["clients", "show", id]), 1);
}

#[test]
fn failures_exit_1_with_one_line_and_usage_errors_exit_2() {
    let db = TestDb::sqlite();
    assert_failure(
        &run(
            &db,
            &["clients", "create", "--name", "x", "--scopes", "unknown"],
        ),
        1,
    );
    assert_failure(&run(&db, &["clients", "disable", "nope"]), 1);
    assert_failure(&run(&db, &["scopes", "create", "bad scope"]), 1);
    assert_failure(&run(&db, &["scopes", "delete", "nope"]), 1);
    assert_failure(&run(&db, &["keys", "retire", "nope"]), 1);
    assert_failure(&run(&db, &["clients", "frobnicate"]), 2);
    assert_failure(&run(&db, &["keys", "generate", "--alg", "HS256"]), 2);
    assert_failure(&run(&db, &["clients", "create"]), 2);
}

#[test]
fn scopes_and_keys_commands() {
    let db = TestDb::sqlite();
    json(&run(&db, &["scopes", "create", "a", "--json"]));
    let scopes = json(&run(&db, &["scopes", "list", "--json"]));
    assert_eq!(scopes[0]["name"], "a");
    json(&run(
        &db,
        &[
            "clients", "create", "--name", "x", "--scopes", "a", "--json",
        ],
    ));
    assert_failure(&run(&db, &["scopes", "delete", "a"]), 1);

    let first = json(&run(&db, &["keys", "generate", "--json"]));
    assert_eq!(first["state"], "active", "the first key becomes active");
    let second = json(&run(&db, &["keys", "generate", "--alg", "EdDSA", "--json"]));
    assert_eq!(second["state"], "next");
    assert_eq!(second["alg"], "EdDSA");
    let pem = db
        .keys_dir()
        .join(format!("{}.pem", second["kid"].as_str().unwrap()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&pem).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let rotation = json(&run(&db, &["keys", "rotate", "--json"]));
    assert_eq!(rotation["activated"], second["kid"]);
    assert_eq!(rotation["retired"], first["kid"]);
    let listed = json(&run(&db, &["keys", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_failure(
        &run(
            &db,
            &["keys", "retire", rotation["activated"].as_str().unwrap()],
        ),
        1,
    );
    json(&run(
        &db,
        &[
            "keys",
            "retire",
            rotation["next"].as_str().unwrap(),
            "--json",
        ],
    ));
}
