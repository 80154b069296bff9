//! The `stack` binary as a newcomer runs it: a failure at start is one line naming what failed,
//! and `--help` shows no secret.

use std::net::TcpListener;
use std::path::Path;

use test_support::cli::{StartFailure, assert_help_hides_secrets, assert_start_failures};
use test_support::net::closed_port;
use uuid::Uuid;

#[test]
fn start_up_failures_name_what_failed_once() {
    let dir = std::env::temp_dir().join(format!("stack-cli-{}", Uuid::new_v4().simple()));
    let data = dir.join("data").display().to_string();
    let keys = dir.join("keys").display().to_string();
    // The auth server's SQLite file cannot be opened: a directory stands where it belongs.
    let blocked = dir.join("blocked");
    std::fs::create_dir_all(blocked.join("auth-server.db")).unwrap();
    let blocked = blocked.display().to_string();
    let blocked_file = format!("{blocked}/auth-server.db");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let pg_port = closed_port();
    let postgres = format!("postgres://stack:secret-pw@127.0.0.1:{pg_port}/platform");
    let at_postgres = format!("PostgreSQL at 127.0.0.1:{pg_port}");
    let redis_port = closed_port();
    let redis = format!("redis://:secret-pw@127.0.0.1:{redis_port}");
    let at_redis = format!("Redis at 127.0.0.1:{redis_port}");
    // Random ports; the stack logs its start at info: errors only, so the failure's line is all
    // there is (an error logged besides it would still show).
    let stack = |failure: StartFailure, data: &str| {
        failure
            .env("AUTH_BIND", "127.0.0.1:0")
            .env("API_BIND", "127.0.0.1:0")
            .env("RUST_LOG", "error")
            .env("DATA_DIR", data)
            .env("KEYS_DIR", keys.as_str())
    };
    let cases = [
        stack(
            StartFailure::new("auth address in use", &["--auth-bind", &taken], &[&taken]),
            &data,
        ),
        stack(
            StartFailure::new("SQLite file that cannot be opened", &[], &[&blocked_file]),
            &blocked,
        ),
        stack(
            StartFailure::new(
                "PostgreSQL closed",
                &["--database-url", &postgres],
                &[&at_postgres, "Connection refused"],
            ),
            &data,
        ),
        stack(
            StartFailure::new("Redis closed", &[], &[&at_redis, "Connection refused"]),
            &data,
        )
        .env("REDIS_URL", redis.as_str()),
    ];
    assert_start_failures(Path::new(env!("CARGO_BIN_EXE_stack")), &cases, "secret-pw");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_never_shows_a_secret() {
    let secrets = assert_help_hides_secrets(Path::new(env!("CARGO_BIN_EXE_stack")));
    for name in ["DATABASE_URL", "REDIS_URL", "JOB_SIGNING_KEY", "SMTP_URL"] {
        assert!(
            secrets.contains(name),
            "{name} was not exercised: {secrets:?}"
        );
    }
}
