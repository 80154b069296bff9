//! The `transcription-api` binary as an operator runs it: one error line naming what failed,
//! quiet migrations, no secret in `--help`, and the start-up warning about revocations.

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use serde_json::Value;
use test_support::auth::TestAuthServer;
use test_support::cli::{
    StartFailure, assert_help_hides_secrets, assert_start_failures, run_with_env,
};
use test_support::db::TestDb;
use test_support::net::closed_port;
use test_support::process::{ServiceProcess, Signal};
use uuid::Uuid;

const SIGNING_KEY: &str = "transcription-api binary tests: 32+ bytes";

/// Runs `transcription-api` with exactly `env` (and `PATH`) as its environment.
fn api(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_with_env(
        Path::new(env!("CARGO_BIN_EXE_transcription-api")),
        args,
        env,
        "",
    )
}

/// Every start-up failure is one line on stderr naming what failed (the address, the SQLite
/// file, PostgreSQL's or Redis's host and port), each cause once, never a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_failures_name_what_failed_once() {
    // `serve` loads the auth server's keys before it binds.
    let auth = TestAuthServer::spawn().await;
    let db = TestDb::sqlite();
    let sqlite = format!("sqlite:{}", db.dir.join("api.db").display());
    let queue = format!("sqlite:{}", db.dir.join("queue.db").display());
    let a_file = db.dir.join("a-file");
    std::fs::write(&a_file, "not a directory").unwrap();
    let api_db_under_file = format!("{}/api.db", a_file.display());
    let queue_under_file = format!("{}/queue.db", a_file.display());
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let pg_port = closed_port();
    let postgres = format!("postgres://api:secret-pw@127.0.0.1:{pg_port}/platform");
    let at_postgres = format!("PostgreSQL at 127.0.0.1:{pg_port}");
    let redis_port = closed_port();
    let redis = format!("redis://:secret-pw@127.0.0.1:{redis_port}");
    let at_redis = format!("Redis at 127.0.0.1:{redis_port}");
    let serve = ["serve", "--bind", "127.0.0.1:0"];
    // `serve` warns at start that revocations go unseen without Redis: errors only, so the
    // failure's line is all there is (an error logged besides it would still show).
    let serving = |failure: StartFailure, database: &str, queue: &str| {
        failure
            .env("RUST_LOG", "error")
            .env("DATABASE_URL", database)
            .env("QUEUE_DATABASE_URL", queue)
            .env("JOB_SIGNING_KEY", SIGNING_KEY)
            .env("AUTH_ISSUER", auth.issuer.as_str())
            .env("AUTH_JWKS_URL", auth.jwks_url())
    };
    let cases = [
        serving(
            StartFailure::new(
                "bind address in use",
                &["serve", "--bind", &taken],
                &[&taken],
            ),
            &sqlite,
            &queue,
        ),
        serving(
            StartFailure::new(
                "database under a file (serve)",
                &serve,
                &[&api_db_under_file],
            ),
            &format!("sqlite:{api_db_under_file}"),
            &queue,
        ),
        StartFailure::new("database under a file", &["migrate"], &[&api_db_under_file])
            .env("DATABASE_URL", format!("sqlite:{api_db_under_file}")),
        serving(
            StartFailure::new("embedded queue under a file", &serve, &[&queue_under_file]),
            &sqlite,
            &format!("sqlite:{queue_under_file}"),
        ),
        StartFailure::new(
            "PostgreSQL closed",
            &["migrate"],
            &[&at_postgres, "Connection refused"],
        )
        .env("DATABASE_URL", postgres.as_str()),
        serving(
            StartFailure::new("Redis closed", &serve, &[&at_redis, "Connection refused"]),
            &sqlite,
            &queue,
        )
        .env("REDIS_URL", redis.as_str()),
    ];
    let bin = Path::new(env!("CARGO_BIN_EXE_transcription-api"));
    assert_start_failures(bin, &cases, "secret-pw");
}

/// `transcription-api migrate` logs only what is wrong: twice on PostgreSQL, nothing on
/// stderr.
#[tokio::test]
async fn migrate_is_quiet_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    for _ in 0..2 {
        let output = api(&["migrate"], &[("DATABASE_URL", &db.url)]);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    }
}

/// `--help` of every command never shows the value of a variable that can hold a secret.
#[test]
fn help_never_shows_a_secret() {
    let secrets = assert_help_hides_secrets(Path::new(env!("CARGO_BIN_EXE_transcription-api")));
    for name in [
        "DATABASE_URL",
        "REDIS_URL",
        "JOB_SIGNING_KEY",
        "QUEUE_DATABASE_URL",
        "AUTH_JWKS_URL",
    ] {
        assert!(
            secrets.contains(name),
            "{name} was not exercised: {secrets:?}"
        );
    }
}

/// README (Configuration): without `REDIS_URL` the API cannot see revocations made at the auth
/// server and warns about it at start; given `REDIS_URL` (it reads the revoked-token list
/// there) it has nothing to warn about.
#[tokio::test]
async fn serve_warns_at_start_that_revocations_go_unseen_without_redis_url_and_not_with_it() {
    const WARNING: &str =
        "REDIS_URL is unset: revoked access tokens stay valid here until they expire";
    let auth = TestAuthServer::spawn().await;
    let db = TestDb::sqlite();
    let env = |redis: Option<(&str, &str)>| {
        let mut env = vec![
            (
                "DATABASE_URL",
                format!("sqlite:{}", db.dir.join("api.db").display()),
            ),
            (
                "QUEUE_DATABASE_URL",
                format!("sqlite:{}", db.dir.join("queue.db").display()),
            ),
            ("AUTH_ISSUER", auth.issuer.clone()),
            ("AUTH_JWKS_URL", auth.jwks_url()),
            ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
        ];
        if let Some((url, prefix)) = redis {
            env.push(("REDIS_URL", url.to_owned()));
            env.push(("QUEUE_PREFIX", prefix.to_owned()));
        }
        env
    };
    // The start-up log, complete once the server says it listens (the services are set up
    // before the listener).
    let start_log = async |env: Vec<(&str, String)>, logs: &str| {
        let mut api = ServiceProcess::spawn(
            env!("CARGO_BIN_EXE_transcription-api"),
            &["serve", "--bind", "127.0.0.1:0"],
            &env,
            &db.dir.join(logs),
        );
        api.wait_for_event("transcription-api listening").await;
        let events: Vec<Value> = api
            .stderr()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        api.stop_cleanly(Signal::Term).await;
        events
    };
    let warnings = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|event| event["level"] == "WARN")
            .map(|event| event["fields"]["message"].as_str().unwrap_or("").to_owned())
            .collect()
    };

    let without = start_log(env(None), "without-redis").await;
    assert_eq!(
        warnings(&without),
        [WARNING],
        "one warning at start: {without:?}"
    );

    let Some(redis) = test_support::redis::reachable_url().await else {
        return;
    };
    let prefix = format!("api-cli-{}", Uuid::new_v4().simple());
    let with = start_log(env(Some((&redis, &prefix))), "with-redis").await;
    assert_eq!(warnings(&with), Vec::<String>::new(), "{with:?}");
    test_support::redis::delete_prefix(&redis, &prefix).await;
}
