//! The `transcription-api` binary as an operator runs it: one error line naming what failed,
//! quiet migrations, and no secret in `--help`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use auth_server::testing::{TestAuthServer, TestDb};
use plumbing::testing::{assert_help_hides_secrets, assert_one_error_line, closed_port};

const SIGNING_KEY: &str = "transcription-api binary tests: 32+ bytes";

/// Runs `transcription-api` with exactly `env` (and `PATH`) as its environment.
fn api(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_transcription-api"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Every start-up failure is one line on stderr naming what failed (the address, the SQLite
/// file, PostgreSQL's or Redis's host and port), each cause once, never a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_failures_name_what_failed_once() {
    // `serve` loads the auth server's keys before it binds.
    let auth = TestAuthServer::spawn().await;
    let jwks = auth.jwks_url();
    let db = TestDb::sqlite();
    let sqlite = format!("sqlite:{}", db.dir.join("api.db").display());
    let queue = format!("sqlite:{}", db.dir.join("queue.db").display());
    let a_file = db.dir.join("a-file");
    std::fs::write(&a_file, "not a directory").unwrap();
    let under_a_file = |name: &str| format!("sqlite:{}/{name}", a_file.display());
    let (api_db_under_file, queue_under_file) = (under_a_file("api.db"), under_a_file("queue.db"));
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let pg_port = closed_port();
    let postgres = format!("postgres://api:pg-secret-pw@127.0.0.1:{pg_port}/platform");
    let redis_port = closed_port();
    let redis = format!("redis://:redis-secret-pw@127.0.0.1:{redis_port}");
    // `serve` warns at start that revocations go unseen without Redis; errors only, so the
    // failure's line is all there is (an error logged besides it would still show).
    let serving = |database: &str, queue: &str| -> Vec<(&'static str, String)> {
        vec![
            ("RUST_LOG", "error".to_owned()),
            ("DATABASE_URL", database.to_owned()),
            ("QUEUE_DATABASE_URL", queue.to_owned()),
            ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
            ("AUTH_ISSUER", auth.issuer.clone()),
            ("AUTH_JWKS_URL", jwks.clone()),
        ]
    };
    let with_redis = {
        let mut env = serving(&sqlite, &queue);
        env.push(("REDIS_URL", redis.clone()));
        env
    };
    let cases: Vec<(&str, Vec<&str>, Vec<(&'static str, String)>, String)> = vec![
        (
            "bind address in use",
            vec!["serve", "--bind", &taken],
            serving(&sqlite, &queue),
            taken.clone(),
        ),
        (
            "database under a file (serve)",
            vec!["serve", "--bind", "127.0.0.1:0"],
            serving(&api_db_under_file, &queue),
            format!("{}/api.db", a_file.display()),
        ),
        (
            "database under a file (migrate)",
            vec!["migrate"],
            vec![("DATABASE_URL", api_db_under_file.clone())],
            format!("{}/api.db", a_file.display()),
        ),
        (
            "embedded queue under a file",
            vec!["serve", "--bind", "127.0.0.1:0"],
            serving(&sqlite, &queue_under_file),
            format!("{}/queue.db", a_file.display()),
        ),
        (
            "PostgreSQL on a closed port",
            vec!["migrate"],
            vec![("DATABASE_URL", postgres.clone())],
            format!("PostgreSQL at 127.0.0.1:{pg_port}"),
        ),
        (
            "Redis on a closed port",
            vec!["serve", "--bind", "127.0.0.1:0"],
            with_redis,
            format!("Redis at 127.0.0.1:{redis_port}"),
        ),
    ];
    for (case, args, env, thing) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let output = api(&args, &env);
        let line = assert_one_error_line(&output, &thing);
        assert!(line.starts_with("error: "), "{case}: {line}");
        assert!(
            !line.contains("secret-pw"),
            "{case}: a password in `{line}`"
        );
        if case.contains("closed port") {
            assert!(line.to_lowercase().contains("refused"), "{case}: {line}");
        }
    }
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
