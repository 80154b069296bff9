//! The admin CLI as an operator runs it: exit codes, text and `--json` output.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::helpers::{TestApp, TestDb};

pub fn command(db: &TestDb, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_auth-server"));
    command
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("AUTH_SECRETS", db.auth_secrets())
        .env("KEYS_DIR", db.keys_dir())
        .env_remove("AUTH_SECRETS_FILE")
        .env_remove("CLIENT_SECRET_PEPPER")
        // The suite's REDIS_URL must not make the CLI publish cutoffs into the shared Redis
        // under the default prefix; tests that want Redis set it with their own prefix.
        .env_remove("REDIS_URL")
        .env_remove("QUEUE_PREFIX");
    command
}

fn run(db: &TestDb, args: &[&str]) -> Output {
    command(db, args).stdin(Stdio::null()).output().unwrap()
}

/// Runs a command with `input` on stdin (how passwords are given).
fn run_with_stdin(db: &TestDb, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = command(db, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn json(output: &Output) -> Value {
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
    // The running server: once its 2 s client cache has turned over (its clock moved past it),
    // the old secret is refused and the new one accepted.
    app.clock
        .advance(auth_server::grants::client_auth::CLIENT_CACHE_TTL);
    let cc = [("grant_type", "client_credentials")];
    assert_eq!(app.token(&cc, Some((id, secret))).await.status(), 401);
    assert_eq!(app.token(&cc, Some((id, new_secret))).await.status(), 200);
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

    // One chain per algorithm: the first key of each algorithm becomes active, the next one
    // of that algorithm is published as next.
    let first = json(&run(&db, &["keys", "generate", "--json"]));
    assert_eq!(first["state"], "active", "the first key becomes active");
    assert_eq!(first["alg"], "ES256");
    let second = json(&run(&db, &["keys", "generate", "--json"]));
    assert_eq!(second["state"], "next");
    let eddsa = json(&run(&db, &["keys", "generate", "--alg", "EdDSA", "--json"]));
    assert_eq!(
        eddsa["state"], "active",
        "the first EdDSA key becomes active"
    );
    assert_eq!(eddsa["alg"], "EdDSA");
    assert!(
        !db.keys_dir().exists(),
        "private keys go to the database, not to files"
    );
    // `--alg` rotates that chain only.
    let rotations = json(&run(&db, &["keys", "rotate", "--alg", "ES256", "--json"]));
    let rotations = rotations.as_array().unwrap();
    assert_eq!(rotations.len(), 1);
    let rotation = &rotations[0];
    assert_eq!(rotation["alg"], "ES256");
    assert_eq!(rotation["activated"], second["kid"]);
    assert_eq!(rotation["retired"], first["kid"]);
    let listed = json(&run(&db, &["keys", "list", "--json"]));
    let state_of = |kid: &Value| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == *kid)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(listed.as_array().unwrap().len(), 4);
    assert_eq!(
        state_of(&eddsa["kid"]),
        "active",
        "the EdDSA chain is untouched"
    );
    // Without `--alg` every chain with an active key rotates, ES256 first.
    let all = json(&run(&db, &["keys", "rotate", "--json"]));
    let all = all.as_array().unwrap();
    let algs: Vec<&str> = all.iter().map(|r| r["alg"].as_str().unwrap()).collect();
    assert_eq!(algs, ["ES256", "EdDSA"]);
    assert_eq!(all[0]["activated"], rotation["next"]);
    assert_eq!(all[0]["retired"], second["kid"]);
    assert_eq!(all[1]["retired"], eddsa["kid"]);
    assert_eq!(all[1]["unannounced"], true, "no EdDSA key was next");
    let text = run(&db, &["keys", "rotate", "--alg", "EdDSA"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.starts_with("alg: EdDSA\nactive: "), "{stdout}");
    let rotation = &all[0];
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

#[tokio::test]
async fn users_and_token_revocation_from_the_cli() {
    let app = TestApp::sqlite().await;
    let db = &app.db;
    json(&run(db, &["scopes", "create", "a", "--json"]));
    json(&run(db, &["scopes", "create", "b", "--json"]));
    let created = json(&run_with_stdin(
        db,
        &[
            "users",
            "create",
            "--email",
            "Cli@Example.com",
            "--permissions",
            "a",
            "--json",
        ],
        "correct horse battery\n",
    ));
    let user_id = created["id"].as_str().unwrap().to_owned();
    assert!(
        created.get("password_hash").is_none(),
        "the hash is never printed"
    );
    assert!(
        !String::from_utf8_lossy(&run(db, &["users", "list", "--json"]).stdout).contains("argon2")
    );

    // Weak, short and missing passwords are refused; the password never comes from argv.
    for weak in ["password123\n", "short\n", "\n"] {
        assert_failure(
            &run_with_stdin(
                db,
                &["users", "create", "--email", "weak@example.com"],
                weak,
            ),
            1,
        );
    }
    assert_failure(
        &run_with_stdin(
            db,
            &["users", "create", "--email", "not-an-email"],
            "correct horse battery\n",
        ),
        1,
    );
    assert_failure(
        &run_with_stdin(
            db,
            &["users", "create", "--email", "cli@example.com"],
            "correct horse battery\n",
        ),
        1,
    );

    let client = json(&run(
        db,
        &[
            "clients", "create", "--name", "app", "--scopes", "a b", "--grant", "password",
            "--json",
        ],
    ));
    let (id, secret) = (
        client["client_id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap(),
    );
    let shown = json(&run(db, &["clients", "show", id, "--json"]));
    assert_eq!(
        shown["grant_types"],
        serde_json::json!(["password", "refresh_token"]),
        "password implies refresh_token"
    );

    let login = async |password: &str| {
        let form = [
            ("grant_type", "password"),
            ("username", "cli@example.com"),
            ("password", password),
        ];
        app.token(&form, Some((id, secret))).await
    };
    let body: Value = login("correct horse battery").await.json().await.unwrap();
    assert_eq!(body["scope"], "a");
    let refresh_token = body["refresh_token"].as_str().unwrap().to_owned();

    json(&run(
        db,
        &["users", "set-permissions", &user_id, "a b", "--json"],
    ));
    assert_eq!(
        json(&run(db, &["users", "show", "cli@example.com", "--json"]))["permissions"],
        serde_json::json!(["a", "b"])
    );

    // A password change ends the user's sessions.
    let reset = json(&run_with_stdin(
        db,
        &["users", "reset-password", &user_id, "--json"],
        "a brand new passphrase\n",
    ));
    assert_eq!(reset["revoked_sessions"], 1);
    let refreshed = app
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
            ],
            Some((id, secret)),
        )
        .await;
    assert_eq!(refreshed.status(), 400);
    assert_eq!(login("correct horse battery").await.status(), 400);
    let body: Value = login("a brand new passphrase").await.json().await.unwrap();
    let refresh_token = body["refresh_token"].as_str().unwrap().to_owned();

    assert_eq!(
        json(&run(
            db,
            &["tokens", "revoke", "--user", &user_id, "--json"]
        ))["revoked_sessions"],
        1
    );
    let refreshed = app
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
            ],
            Some((id, secret)),
        )
        .await;
    assert_eq!(refreshed.status(), 400);
    json(&run(
        db,
        &["tokens", "revoke", "--jti", "some-jti", "--json"],
    ));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        app.store
            .is_access_token_denied("some-jti", now)
            .await
            .unwrap()
    );
    assert_failure(&run(db, &["tokens", "revoke"]), 2);

    let disabled = json(&run(db, &["users", "disable", &user_id, "--json"]));
    assert_eq!(disabled["disabled"], true);
    assert_eq!(login("a brand new passphrase").await.status(), 400);
    json(&run(db, &["users", "enable", &user_id, "--json"]));
    json(&run(db, &["users", "delete", &user_id, "--json"]));
    assert_failure(&run(db, &["users", "show", &user_id]), 1);
}

/// `clap`'s own consistency checks, and the README's configuration table is exactly the flags
/// of `auth-server serve` with their env fallbacks (`--no-migrate` once hid inside a doc
/// comment).
#[test]
fn the_cli_is_well_formed_and_matches_the_readme() {
    use clap::{CommandFactory, Parser};
    auth_server::cli::Cli::command().debug_assert();
    let mut command = auth_server::cli::Cli::command();
    command.build();
    let serve = command.find_subcommand("serve").unwrap();
    test_support::readme::assert_flag_table_matches(
        &["## auth-server", "### Configuration"],
        &[serve],
    );
    let parsed = auth_server::cli::Cli::try_parse_from(["auth-server", "serve", "--no-migrate"]);
    assert!(parsed.is_ok(), "{parsed:?}");
}

/// `--access-token-ttl` is not one of the `--jti/--client/--user` alternatives: it combines with
/// each, an exported `ACCESS_TOKEN_TTL` does not break `tokens revoke`, and the commands that
/// end a user's or client's tokens take it too. A denied jti is kept for that long.
#[tokio::test]
async fn the_access_token_ttl_combines_with_every_revocation() {
    let app = TestApp::sqlite().await;
    let db = &app.db;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    json(&run(
        db,
        &[
            "tokens",
            "revoke",
            "--jti",
            "ttl-jti",
            "--access-token-ttl",
            "1h",
            "--json",
        ],
    ));
    let denied = app.store.denied_access_tokens(now).await.unwrap();
    let (_, until) = denied.iter().find(|(jti, _)| jti == "ttl-jti").unwrap();
    assert!(
        (now + 3600..=now + 3600 + 120).contains(until),
        "kept for the TTL plus the leeway: {until}"
    );

    let (client_id, _) = app.create_client(&["a"], &[]).await;
    let user_id = app
        .create_user("ttl@example.com", "correct horse battery", &["a"])
        .await;
    let with_env = |args: &[&str]| {
        let output = command(db, args)
            .env("ACCESS_TOKEN_TTL", "30m")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        json(&output)
    };
    with_env(&["tokens", "revoke", "--jti", "env-jti", "--json"]);
    with_env(&["tokens", "revoke", "--user", &user_id, "--json"]);
    with_env(&["tokens", "revoke", "--client", &client_id, "--json"]);
    for args in [
        ["users", "disable", user_id.as_str()],
        ["clients", "disable", client_id.as_str()],
        ["users", "delete", user_id.as_str()],
        ["clients", "delete", client_id.as_str()],
    ] {
        let mut args = args.to_vec();
        args.extend(["--access-token-ttl", "10m", "--json"]);
        json(&run(db, &args));
    }
    let cutoffs = app.store.revoked_subjects(now).await.unwrap();
    assert_eq!(cutoffs.len(), 2, "one per user and per client: {cutoffs:?}");
    for cutoff in cutoffs {
        // The larger of 30 m and 10 m after the cutoff, then the longest leeway a verifier may
        // have. The 30 m entry was written a few seconds before the latest (10 m) cutoff, and
        // a disabled client's cutoff lies its cache time ahead: allow 5 s for both.
        let retention = auth_server::RETENTION_AFTER_EXP.as_secs() as i64;
        let horizon = cutoff.not_before_ms / 1000 + 1 + 1800 + retention;
        assert!(
            (horizon - 5..=horizon).contains(&cutoff.expires_at),
            "the larger of 30 m and 10 m, plus the leeway: {cutoff:?}"
        );
    }
    assert_failure(
        &run(db, &["tokens", "revoke", "--access-token-ttl", "1h"]),
        2,
    );
    assert_failure(
        &run(db, &["tokens", "revoke", "--jti", "a", "--user", "b"]),
        2,
    );
}

/// RFC 8265: `users create` refuses a second account whose name only differs in Unicode form
/// (NFD vs NFC), case or width, and a name UsernameCaseMapped refuses, with exit code 1.
async fn users_create_refuses_identical_looking_names(app: &TestApp) {
    let db = &app.db;
    let create = |email: &str| {
        run_with_stdin(
            db,
            &["users", "create", "--email", email, "--json"],
            "correct horse battery\n",
        )
    };
    let created = json(&create("jos\u{e9}@example.com"));
    for twin in [
        "jose\u{301}@example.com",
        "JOS\u{c9}@example.com",
        "\u{ff4a}os\u{e9}@example.com",
    ] {
        let refused = create(twin);
        assert_failure(&refused, 1);
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("already exists"),
            "{twin:?}: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
    for invalid in ["a b@example.com", "ada\u{2603}@example.com"] {
        let refused = create(invalid);
        assert_failure(&refused, 1);
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("not a valid user name"),
            "{invalid:?}: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
    let long = format!("{}@example.com", "a".repeat(250));
    let refused = create(&long);
    assert_failure(&refused, 1);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("254 bytes"));
    // `users show` finds the account by any spelling.
    let shown = json(&run(
        db,
        &["users", "show", "JOSE\u{301}@example.com", "--json"],
    ));
    assert_eq!(shown["id"], created["id"]);
}

#[tokio::test]
async fn sqlite_users_create_refuses_identical_looking_names() {
    users_create_refuses_identical_looking_names(&TestApp::sqlite().await).await;
}

/// Admin commands log only warnings by default, so sqlx's PostgreSQL notices no longer add
/// lines to stderr and `assert_failure`'s one-line check holds there too.
#[tokio::test]
async fn postgres_users_create_refuses_identical_looking_names() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    users_create_refuses_identical_looking_names(&TestApp::spawn(db).await).await;
}
