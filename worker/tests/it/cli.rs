//! `worker queue …` and start-up validation through the built binary.

use std::process::{Command, Output};
use std::time::Duration;

use job_queue::{QueueConfig, ReliableQueue, SqliteQueue};

use crate::helpers::{SIGNING_KEY, TempDir, signing_key};

fn worker(db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("QUEUE_DATABASE_URL", db)
        .env("JOB_SIGNING_KEY", SIGNING_KEY)
        .output()
        .unwrap()
}

pub fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A queue database holding one dead job on `transcribe`; returns its id.
pub async fn queue_with_dead_job(dir: &TempDir) -> (String, String) {
    let url = format!("sqlite:{}", dir.path().join("queue.db").display());
    let queue = SqliteQueue::connect(
        &url,
        signing_key(),
        QueueConfig {
            max_attempts: 1,
            ..QueueConfig::default()
        },
    )
    .await
    .unwrap();
    queue.migrate().await.unwrap();
    let id = queue
        .enqueue("transcribe", "transcribe", serde_json::json!({"x": 1}))
        .await
        .unwrap();
    queue.heartbeat("w", Duration::from_secs(10)).await.unwrap();
    let job = queue
        .reserve("transcribe", "w", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    queue.fail(&job, "engine exploded").await.unwrap();
    (url, id.to_string())
}

#[tokio::test]
async fn stats_dead_requeue_and_purge_dead() {
    let dir = TempDir::new("cli");
    let (db, id) = queue_with_dead_job(&dir).await;

    let stats = json(&worker(&db, &["queue", "stats", "--json"]));
    assert_eq!(stats["transcribe"]["dead"], 1);
    assert_eq!(stats["notify"]["ready"], 0);

    let dead = json(&worker(
        &db,
        &["queue", "dead", "--queue", "transcribe", "--json"],
    ));
    assert_eq!(dead["transcribe"][0]["id"], id.as_str());
    assert!(
        dead["transcribe"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("engine exploded")
    );

    let text = worker(&db, &["queue", "dead"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains(&id));

    let requeued = json(&worker(&db, &["queue", "requeue", &id, "--json"]));
    assert_eq!(requeued["queue"], "transcribe");
    let stats = json(&worker(
        &db,
        &["queue", "stats", "--queue", "transcribe", "--json"],
    ));
    assert_eq!(stats["transcribe"]["ready"], 1);
    assert_eq!(stats["transcribe"]["dead"], 0);

    let missing = worker(&db, &["queue", "requeue", "no-such-job"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no dead job"));

    let purged = json(&worker(&db, &["queue", "purge-dead", "--json"]));
    assert_eq!(purged["transcribe"]["purged"], 0);
}

#[tokio::test]
async fn purge_dead_empties_the_dead_list() {
    let dir = TempDir::new("cli-purge");
    let (db, _) = queue_with_dead_job(&dir).await;
    let purged = json(&worker(
        &db,
        &["queue", "purge-dead", "--queue", "transcribe", "--json"],
    ));
    assert_eq!(purged["transcribe"]["purged"], 1);
    let stats = json(&worker(&db, &["queue", "stats", "--json"]));
    assert_eq!(stats["transcribe"]["dead"], 0);
}

#[test]
fn bad_configuration_fails_with_one_line() {
    let dir = TempDir::new("cli-config");
    let db = format!("sqlite:{}", dir.path().join("q.db").display());

    // Only commands that sign a job need the key (`queue stats` does not: cli_output.rs).
    let no_key = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["queue", "requeue", "some-job"])
        .env_clear()
        .env("QUEUE_DATABASE_URL", &db)
        .output()
        .unwrap();
    assert_eq!(no_key.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&no_key.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("JOB_SIGNING_KEY"), "{stderr}");

    let short_key = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["queue", "requeue", "some-job"])
        .env_clear()
        .env("QUEUE_DATABASE_URL", &db)
        .env("JOB_SIGNING_KEY", "short")
        .output()
        .unwrap();
    assert_eq!(short_key.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&short_key.stderr).contains("32 bytes"));

    let no_api = worker(&db, &["transcriber"]);
    assert_eq!(no_api.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&no_api.stderr);
    assert!(
        stderr.contains("TRANSCRIPTION_API_URL is required"),
        "{stderr}"
    );

    let bad_engine = worker(
        &db,
        &[
            "transcriber",
            "--transcription-api-url",
            "http://api.test",
            "--auth-url",
            "http://auth.test",
            "--worker-client-id",
            "w",
            "--worker-client-secret",
            "s",
            "--engine",
            "command",
        ],
    );
    assert_eq!(bad_engine.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_engine.stderr).contains("ENGINE_COMMAND"));

    let bad_from = worker(&db, &["notifier", "--mail-from", "nope"]);
    assert_eq!(bad_from.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_from.stderr).contains("MAIL_FROM"));

    let ca_without_smtp = worker(&db, &["notifier", "--smtp-ca-file", "/nonexistent/ca.pem"]);
    assert_eq!(ca_without_smtp.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&ca_without_smtp.stderr);
    assert!(stderr.contains("SMTP_CA_FILE needs SMTP_URL"), "{stderr}");

    let missing_ca = worker(
        &db,
        &[
            "notifier",
            "--smtp-url",
            "smtp://127.0.0.1:25?tls=required",
            "--smtp-ca-file",
            "/nonexistent/ca.pem",
        ],
    );
    assert_eq!(missing_ca.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing_ca.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot read SMTP_CA_FILE /nonexistent/ca.pem"),
        "{stderr}"
    );

    let usage = worker(&db, &["queue", "frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
}

/// `clap`'s own consistency checks, and the README's worker table is exactly the flags of
/// `worker transcriber` and `worker notifier` with their env fallbacks.
#[test]
fn the_cli_is_well_formed_and_matches_the_readme() {
    use clap::CommandFactory;
    worker::cli::Cli::command().debug_assert();
    let mut command = worker::cli::Cli::command();
    command.build();
    let roles = ["transcriber", "notifier"].map(|name| command.find_subcommand(name).unwrap());
    test_support::readme::assert_flag_table_matches(&["## worker"], &roles);
}
