//! The `worker` binary as an operator runs it: read-only queue commands without the signing
//! key, JSON errors with `--json`, RFC 3339 times, one error line naming what failed, and no
//! secret in `--help` or on the command line.

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use serde_json::Value;
use test_support::cli::{
    StartFailure, assert_help_hides_secrets, assert_one_error_line, assert_rfc3339_utc,
    assert_start_failures, run_with_env,
};
use test_support::net::closed_port;

use crate::cli::{json, queue_with_dead_job};
use crate::helpers::{SIGNING_KEY, TempDir};

/// Runs `worker` with exactly `env` (and `PATH`) as its environment.
fn worker(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_with_env(Path::new(env!("CARGO_BIN_EXE_worker")), args, env, "")
}

/// `queue stats`, `queue dead` and `queue purge-dead` neither sign nor verify a job: they run
/// without `JOB_SIGNING_KEY`. `queue requeue` re-signs the job and needs it.
#[tokio::test]
async fn commands_that_only_read_need_no_signing_key() {
    let dir = TempDir::new("cli-no-key");
    let (db, id) = queue_with_dead_job(&dir).await;
    let no_key = [("QUEUE_DATABASE_URL", db.as_str())];
    let stats = json(&worker(&["queue", "stats", "--json"], &no_key));
    assert_eq!(stats["transcribe"]["dead"], 1);
    let dead = json(&worker(&["queue", "dead", "--json"], &no_key));
    assert_eq!(dead["transcribe"][0]["id"], id.as_str());
    assert_eq!(dead["transcribe"][0]["verified"], true);
    let text = worker(&["queue", "dead"], &no_key);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains(&id));

    let requeue = worker(&["queue", "requeue", &id], &no_key);
    assert_one_error_line(&requeue, "JOB_SIGNING_KEY");
    let with_key = [
        ("QUEUE_DATABASE_URL", db.as_str()),
        ("JOB_SIGNING_KEY", SIGNING_KEY),
    ];
    json(&worker(&["queue", "requeue", &id, "--json"], &with_key));

    let purged = json(&worker(&["queue", "purge-dead", "--json"], &no_key));
    assert_eq!(purged["transcribe"]["purged"], 0);
}

/// The same on Redis.
#[tokio::test]
async fn commands_that_only_read_need_no_signing_key_on_redis() {
    let Some(url) = test_support::redis::reachable_url().await else {
        return;
    };
    let prefix = format!("worker-cli-{}", uuid::Uuid::new_v4().simple());
    let env = [
        ("REDIS_URL", url.as_str()),
        ("QUEUE_PREFIX", prefix.as_str()),
    ];
    let stats = json(&worker(&["queue", "stats", "--json"], &env));
    assert_eq!(stats["transcribe"]["ready"], 0);
    json(&worker(&["queue", "dead", "--json"], &env));
    test_support::redis::delete_prefix(&url, &prefix).await;
}

/// When a dead job died, in text and in JSON: RFC 3339 in UTC.
#[tokio::test]
async fn dead_jobs_tell_when_they_died_in_rfc3339() {
    let dir = TempDir::new("cli-times");
    let (db, _) = queue_with_dead_job(&dir).await;
    let env = [("QUEUE_DATABASE_URL", db.as_str())];
    let dead = json(&worker(&["queue", "dead", "--json"], &env));
    assert_rfc3339_utc(dead["transcribe"][0]["died_at"].as_str().unwrap());
    let text = String::from_utf8(worker(&["queue", "dead"], &env).stdout).unwrap();
    let died_at = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix("died_at="))
        .unwrap_or_else(|| panic!("no died_at in {text}"));
    assert_rfc3339_utc(died_at);
}

/// With `--json` a failure of a queue command is `{"error": …}` on stderr; exit codes stay 1
/// and 2.
#[tokio::test]
async fn queue_errors_are_json_with_json() {
    let dir = TempDir::new("cli-json");
    let (db, _) = queue_with_dead_job(&dir).await;
    let env = [
        ("QUEUE_DATABASE_URL", db.as_str()),
        ("JOB_SIGNING_KEY", SIGNING_KEY),
    ];
    for (args, code, says) in [
        (
            vec!["queue", "requeue", "no-such-job", "--json"],
            1,
            "no dead job",
        ),
        (
            vec!["--json", "queue", "stats", "--queue", "bad name"],
            1,
            "invalid queue name",
        ),
        (vec!["queue", "frobnicate", "--json"], 2, "frobnicate"),
    ] {
        let output = worker(&args, &env);
        assert_eq!(output.status.code(), Some(code), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error: Value = serde_json::from_str(stderr.trim())
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stderr}"));
        assert!(
            error["error"].as_str().unwrap().contains(says),
            "{args:?}: {error}"
        );
    }
}

/// Start-up failures are one line naming what failed: the queue's SQLite file, Redis's host
/// and port, the metrics address; each cause once, never a password.
#[test]
fn start_up_failures_name_what_failed_once() {
    let dir = TempDir::new("cli-failures");
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, "not a directory").unwrap();
    let under_a_file = format!("{}/queue.db", a_file.display());
    let queue = format!("sqlite:{}", dir.path().join("queue.db").display());
    let redis_port = closed_port();
    let redis = format!("redis://:secret-pw@127.0.0.1:{redis_port}");
    let at_redis = format!("Redis at 127.0.0.1:{redis_port}");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let outbox = dir.path().join("outbox").display().to_string();
    let notifier = |failure: StartFailure| {
        failure
            .env("JOB_SIGNING_KEY", SIGNING_KEY)
            .env("OUTBOX_DIR", outbox.as_str())
    };
    let cases = [
        StartFailure::new(
            "embedded queue under a file",
            &["queue", "stats"],
            &[&under_a_file],
        )
        .env("QUEUE_DATABASE_URL", format!("sqlite:{under_a_file}")),
        StartFailure::new(
            "Redis closed",
            &["queue", "stats"],
            &[&at_redis, "Connection refused"],
        )
        .env("REDIS_URL", redis.as_str()),
        notifier(StartFailure::new(
            "Redis closed (notifier)",
            &["notifier"],
            &[&at_redis, "Connection refused"],
        ))
        .env("REDIS_URL", redis.as_str()),
        notifier(StartFailure::new(
            "metrics address in use",
            &["notifier", "--metrics-bind", &taken],
            &[&taken],
        ))
        .env("QUEUE_DATABASE_URL", queue.as_str()),
    ];
    assert_start_failures(Path::new(env!("CARGO_BIN_EXE_worker")), &cases, "secret-pw");
}

/// The client secret can come from a file; with `WORKER_CLIENT_SECRET` set as well the command
/// line is ambiguous: a usage error.
#[test]
fn the_client_secret_file_conflicts_with_the_secret() {
    let dir = TempDir::new("cli-secret-file");
    let file = dir.path().join("client-secret");
    std::fs::write(&file, "s3cret\n").unwrap();
    let file = file.display().to_string();
    let output = worker(
        &["transcriber"],
        &[
            ("TRANSCRIPTION_API_URL", "http://127.0.0.1:1"),
            ("AUTH_URL", "http://127.0.0.1:1"),
            ("WORKER_CLIENT_ID", "worker"),
            ("WORKER_CLIENT_SECRET", "from-the-environment"),
            ("WORKER_CLIENT_SECRET_FILE", &file),
            ("JOB_SIGNING_KEY", SIGNING_KEY),
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--worker-client-secret"), "{stderr}");
    assert!(!stderr.contains("from-the-environment"), "{stderr}");
}

/// `--help` of every command never shows the value of a variable that can hold a secret.
#[test]
fn help_never_shows_a_secret() {
    let secrets = assert_help_hides_secrets(Path::new(env!("CARGO_BIN_EXE_worker")));
    for name in [
        "REDIS_URL",
        "QUEUE_DATABASE_URL",
        "JOB_SIGNING_KEY",
        "WORKER_CLIENT_SECRET",
        "SMTP_URL",
        "TRANSCRIPTION_API_URL",
        "AUTH_URL",
    ] {
        assert!(
            secrets.contains(name),
            "{name} was not exercised: {secrets:?}"
        );
    }
}
