//! The `stack` binary as a newcomer runs it: a failure at start is one line naming what failed,
//! and `--help` shows no secret.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use plumbing::testing::{assert_help_hides_secrets, assert_one_error_line, closed_port};
use uuid::Uuid;

/// Runs `stack` on random ports with `env` (and `PATH`) as its environment. It logs its start
/// at info; errors only, so the failure's line is all there is (an error logged besides it
/// would still show).
fn stack(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stack"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTH_BIND", "127.0.0.1:0")
        .env("API_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn start_up_failures_name_what_failed_once() {
    let dir = std::env::temp_dir().join(format!("stack-cli-{}", Uuid::new_v4().simple()));
    let data = dir.join("data");
    let keys = dir.join("keys");
    // The auth server's SQLite file cannot be opened: a directory stands where it belongs.
    let blocked = dir.join("blocked");
    std::fs::create_dir_all(blocked.join("auth-server.db")).unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let pg_port = closed_port();
    let postgres = format!("postgres://stack:pg-secret-pw@127.0.0.1:{pg_port}/platform");
    let redis_port = closed_port();
    let redis = format!("redis://:redis-secret-pw@127.0.0.1:{redis_port}");
    let (data, keys, blocked) = (
        data.display().to_string(),
        keys.display().to_string(),
        blocked.display().to_string(),
    );
    let dirs = |data: &str| vec![("DATA_DIR", data.to_owned()), ("KEYS_DIR", keys.clone())];
    let cases: Vec<(&str, Vec<&str>, Vec<(&str, String)>, String)> = vec![
        (
            "auth address in use",
            vec!["--auth-bind", &taken],
            dirs(&data),
            taken.clone(),
        ),
        (
            "SQLite file that cannot be opened",
            vec![],
            dirs(&blocked),
            format!("{blocked}/auth-server.db"),
        ),
        (
            "PostgreSQL on a closed port",
            vec!["--database-url", &postgres],
            dirs(&data),
            format!("PostgreSQL at 127.0.0.1:{pg_port}"),
        ),
        (
            "Redis on a closed port",
            vec![],
            {
                let mut env = dirs(&data);
                env.push(("REDIS_URL", redis.clone()));
                env
            },
            format!("Redis at 127.0.0.1:{redis_port}"),
        ),
    ];
    for (case, args, env, thing) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let output = stack(&args, &env);
        let line = assert_one_error_line(&output, &thing);
        assert!(line.starts_with("error: "), "{case}: {line}");
        assert!(
            !line.contains("secret-pw"),
            "{case}: a password in `{line}`"
        );
    }
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
