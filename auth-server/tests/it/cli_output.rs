//! What an operator reads from the binary: one error line naming what failed, JSON errors with
//! `--json`, quiet commands, RFC 3339 times, and no secret in `--help`.

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use serde_json::Value;
use test_support::cli::{
    StartFailure, assert_help_hides_secrets, assert_one_error_line, assert_rfc3339_utc,
    assert_start_failures, run_with_env,
};
use test_support::net::closed_port;

use crate::cli::json;
use crate::helpers::TestDb;

/// Runs `auth-server` with exactly `env` (and `PATH`) as its environment.
fn auth_server(args: &[&str], env: &[(&str, &str)]) -> Output {
    auth_server_with_stdin(args, env, "")
}

fn auth_server_with_stdin(args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    run_with_env(
        Path::new(env!("CARGO_BIN_EXE_auth-server")),
        args,
        env,
        input,
    )
}

fn db_env(db: &TestDb) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url.clone()),
        ("AUTH_SECRETS", db.auth_secrets().to_owned()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Every start-up failure is one line on stderr naming what failed (the address, the SQLite
/// file, PostgreSQL's or Redis's host and port), each cause once, never a password.
#[test]
fn start_up_failures_name_what_failed_once() {
    let db = TestDb::sqlite();
    let secrets = db.auth_secrets().to_owned();
    let sqlite = db.url.clone();
    // The keys `serve` needs exist (ES256 for access tokens, RS256 for id_tokens), so it has
    // nothing to warn about on the way to its failure.
    for alg in ["ES256", "RS256"] {
        let keys = auth_server(
            &["keys", "generate", "--alg", alg],
            &[("DATABASE_URL", &sqlite), ("AUTH_SECRETS", &secrets)],
        );
        assert!(keys.status.success(), "{keys:?}");
    }

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let a_file = db.dir.join("a-file");
    std::fs::write(&a_file, "not a directory").unwrap();
    let under_a_file = format!("{}/auth.db", a_file.display());
    let directory = db.dir.display().to_string();
    let pg_port = closed_port();
    let postgres = format!("postgres://auth:secret-pw@127.0.0.1:{pg_port}/platform");
    let at_postgres = format!("PostgreSQL at 127.0.0.1:{pg_port}");
    let redis_port = closed_port();
    let redis = format!("redis://:secret-pw@127.0.0.1:{redis_port}");
    let at_redis = format!("Redis at 127.0.0.1:{redis_port}");
    let serve = ["serve", "--bind", "127.0.0.1:0"];
    let refused = "Connection refused";
    let with = |failure: StartFailure, database: &str| {
        failure
            .env("DATABASE_URL", database)
            .env("AUTH_SECRETS", secrets.as_str())
    };
    let cases = [
        with(
            StartFailure::new(
                "bind address in use",
                &["serve", "--bind", &taken],
                &[&taken],
            ),
            &sqlite,
        ),
        with(
            StartFailure::new("SQLite under a file (serve)", &serve, &[&under_a_file]),
            &format!("sqlite:{under_a_file}"),
        ),
        with(
            StartFailure::new("SQLite under a file", &["scopes", "list"], &[&under_a_file]),
            &format!("sqlite:{under_a_file}"),
        ),
        with(
            StartFailure::new("SQLite on a directory", &["migrate"], &[&directory]),
            &format!("sqlite:{directory}"),
        ),
        with(
            StartFailure::new(
                "PostgreSQL closed (serve)",
                &serve,
                &[&at_postgres, refused],
            ),
            &postgres,
        ),
        with(
            StartFailure::new("PostgreSQL closed", &["migrate"], &[&at_postgres, refused]),
            &postgres,
        ),
        with(
            StartFailure::new("Redis closed (serve)", &serve, &[&at_redis, refused]),
            &sqlite,
        )
        .env("REDIS_URL", redis.as_str()),
        with(
            StartFailure::new(
                "Redis closed",
                &["tokens", "revoke", "--jti", "x"],
                &[&at_redis, refused],
            ),
            &sqlite,
        )
        .env("REDIS_URL", redis.as_str()),
    ];
    assert_start_failures(
        Path::new(env!("CARGO_BIN_EXE_auth-server")),
        &cases,
        "secret-pw",
    );
}

/// With `--json` a failure is `{"error": …}` on stderr with the same exit codes: 1 for a
/// failed command, 2 for a usage error.
#[test]
fn with_json_errors_are_json_too() {
    let db = TestDb::sqlite();
    let env = db_env(&db);
    let env = borrowed(&env);
    for (args, code, says) in [
        (vec!["clients", "show", "nope", "--json"], 1, "no client"),
        (
            vec!["--json", "scopes", "create", "bad scope"],
            1,
            "invalid scope name",
        ),
        (vec!["tokens", "revoke", "--json"], 2, "--jti"),
        (vec!["clients", "frobnicate", "--json"], 2, "frobnicate"),
        (vec!["clients", "create", "--json"], 2, "--name"),
    ] {
        let output = auth_server(&args, &env);
        assert_eq!(output.status.code(), Some(code), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        let error: Value = serde_json::from_str(stderr.trim())
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stderr}"));
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(says), "{args:?}: {message}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    // Without --json: the same failure as text.
    let text = auth_server(&["clients", "show", "nope"], &env);
    let line = assert_one_error_line(&text, "no client");
    assert!(line.starts_with("error: "), "{line}");
}

/// Admin commands log only what is wrong: on PostgreSQL a second run applies no migration
/// and prints nothing on stderr (sqlx's `… already exists, skipping` notices are INFO).
#[tokio::test]
async fn admin_commands_are_quiet_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let env = db_env(&db);
    let env = borrowed(&env);
    for _ in 0..2 {
        for args in [vec!["migrate"], vec!["scopes", "list", "--json"]] {
            let output = auth_server(&args, &env);
            assert!(output.status.success(), "{args:?}: {output:?}");
            assert_eq!(
                String::from_utf8_lossy(&output.stderr),
                "",
                "{args:?} prints nothing on stderr"
            );
        }
    }
    // RUST_LOG still turns the logs on.
    let mut loud = env.clone();
    loud.push(("RUST_LOG", "info"));
    let output = auth_server(&["migrate"], &loud);
    assert!(output.status.success());
    assert!(
        !output.stderr.is_empty(),
        "RUST_LOG=info shows the notices again"
    );
}

/// Logs written to a pipe (or a file) are plain text: no ANSI colour codes, since stderr is
/// not a terminal. `keys generate` on a fresh database logs at DEBUG that it generated the
/// database's pepper; `LOG_FORMAT` is unset, so the text format is used.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let db = TestDb::sqlite();
    let env = db_env(&db);
    let mut env = borrowed(&env);
    env.push(("RUST_LOG", "auth_server=debug"));
    let output = auth_server(&["keys", "generate"], &env);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let logged: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("DEBUG"))
        .collect();
    assert!(
        logged
            .iter()
            .any(|line| line.contains("generated its client-secret pepper")),
        "the DEBUG line about the pepper is missing from stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("\x1b["),
        "ANSI escape codes in a log written to a pipe:\n{stderr:?}"
    );
}

/// `users create` and `users reset-password` without a password say that none was given,
/// not that it is too short.
#[test]
fn a_missing_password_is_called_missing() {
    let db = TestDb::sqlite();
    let env = db_env(&db);
    let env = borrowed(&env);
    for input in ["", "\n"] {
        let output = auth_server_with_stdin(
            &["users", "create", "--email", "ada@example.com"],
            &env,
            input,
        );
        let line = assert_one_error_line(&output, "no password was given");
        assert!(!line.contains("at least"), "{line}");
    }
    let short = auth_server_with_stdin(
        &["users", "create", "--email", "ada@example.com"],
        &env,
        "short\n",
    );
    assert_one_error_line(&short, "at least 8 characters");
    let created = auth_server_with_stdin(
        &["users", "create", "--email", "ada@example.com", "--json"],
        &env,
        "correct horse battery\n",
    );
    json(&created);
    let reset = auth_server_with_stdin(&["users", "reset-password", "ada@example.com"], &env, "");
    assert_one_error_line(&reset, "no password was given");
}

/// Every time the CLI prints, in text and in JSON, is RFC 3339 in UTC.
#[test]
fn times_are_rfc3339() {
    let db = TestDb::sqlite();
    let env = db_env(&db);
    let env = borrowed(&env);
    json(&auth_server(&["scopes", "create", "a", "--json"], &env));
    let client = json(&auth_server(
        &[
            "clients", "create", "--name", "x", "--scopes", "a", "--json",
        ],
        &env,
    ));
    let id = client["client_id"].as_str().unwrap();
    let user = json(&auth_server_with_stdin(
        &["users", "create", "--email", "t@example.com", "--json"],
        &env,
        "correct horse battery\n",
    ));
    let key = json(&auth_server(&["keys", "generate", "--json"], &env));

    let text_time = |args: &[&str], field: &str| {
        let output = auth_server(args, &env);
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let value = stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{field}: ")))
            .unwrap_or_else(|| panic!("no {field} in {stdout}"))
            .to_owned();
        assert_rfc3339_utc(&value);
    };
    text_time(&["clients", "show", id], "created_at");
    text_time(&["users", "show", "t@example.com"], "created_at");

    let shown = json(&auth_server(&["clients", "show", id, "--json"], &env));
    assert_rfc3339_utc(shown["created_at"].as_str().unwrap());
    assert_rfc3339_utc(user["created_at"].as_str().unwrap());
    assert_rfc3339_utc(key["created_at"].as_str().unwrap());
    let scopes = json(&auth_server(&["scopes", "list", "--json"], &env));
    assert_rfc3339_utc(scopes[0]["created_at"].as_str().unwrap());
    let revoked = json(&auth_server(
        &["tokens", "revoke", "--client", id, "--json"],
        &env,
    ));
    assert_rfc3339_utc(revoked["not_before"].as_str().unwrap());
}

/// `--help` of every command never shows the value of a variable that can hold a secret.
#[test]
fn help_never_shows_a_secret() {
    let secrets = assert_help_hides_secrets(Path::new(env!("CARGO_BIN_EXE_auth-server")));
    for name in ["DATABASE_URL", "REDIS_URL", "CLIENT_SECRET_PEPPER"] {
        assert!(
            secrets.contains(name),
            "{name} was not exercised: {secrets:?}"
        );
    }
}
