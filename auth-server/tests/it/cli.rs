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

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    keys
}

/// `clients create` for the authorization code flow: the implied refresh_token, the redirect
/// URIs, `--first-party`, `--id-token-alg`; a public client gets no secret (and none to
/// rotate); `clients show` lists it all, in JSON and text.
async fn sign_in_clients_from_the_cli(app: &TestApp) {
    let db = &app.db;
    let confidential = json(&run(
        db,
        &[
            "clients",
            "create",
            "--name",
            "web",
            "--scopes",
            "openid profile email",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "https://web.example/cb",
            "--redirect-uri",
            "http://127.0.0.1/cb",
            "--post-logout-redirect-uri",
            "https://web.example/bye",
            "--first-party",
            "--id-token-alg",
            "ES256",
            "--json",
        ],
    ));
    assert_eq!(keys(&confidential), ["client_id", "client_secret"]);
    let id = confidential["client_id"].as_str().unwrap();
    let shown = json(&run(db, &["clients", "show", id, "--json"]));
    assert_eq!(
        shown["grant_types"],
        serde_json::json!(["authorization_code", "refresh_token"]),
        "authorization_code implies refresh_token"
    );
    assert_eq!(
        shown["redirect_uris"],
        serde_json::json!(["https://web.example/cb", "http://127.0.0.1/cb"])
    );
    assert_eq!(
        shown["post_logout_redirect_uris"],
        serde_json::json!(["https://web.example/bye"])
    );
    assert_eq!(
        shown["scopes"],
        serde_json::json!(["email", "openid", "profile"])
    );
    assert_eq!(
        (
            &shown["public"],
            &shown["first_party"],
            &shown["id_token_alg"]
        ),
        (
            &Value::Bool(false),
            &Value::Bool(true),
            &Value::from("ES256")
        )
    );
    assert!(shown.get("client_secret").is_none() && shown.get("secret_hash").is_none());
    let text = String::from_utf8(run(db, &["clients", "show", id]).stdout).unwrap();
    for line in [
        "grants: authorization_code refresh_token",
        "public: false",
        "first_party: true",
        "id_token_alg: ES256",
        "redirect_uris: https://web.example/cb http://127.0.0.1/cb",
        "post_logout_redirect_uris: https://web.example/bye",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }

    let public_args = [
        "clients",
        "create",
        "--name",
        "app",
        "--scopes",
        "openid",
        "--grant",
        "authorization_code",
        "--redirect-uri",
        "com.example.app:/cb",
        "--public",
    ];
    let public = json(&run(db, &[&public_args[..], &["--json"]].concat()));
    assert_eq!(
        keys(&public),
        ["client_id"],
        "a public client has no secret"
    );
    let public_id = public["client_id"].as_str().unwrap();
    let shown = json(&run(db, &["clients", "show", public_id, "--json"]));
    assert_eq!(
        (
            &shown["public"],
            &shown["first_party"],
            &shown["id_token_alg"]
        ),
        (
            &Value::Bool(true),
            &Value::Bool(false),
            &Value::from("RS256")
        ),
        "RS256 unless registered otherwise"
    );
    let text = run(db, &public_args);
    let stdout = String::from_utf8(text.stdout).unwrap();
    assert!(stdout.contains("a public client"), "{stdout}");
    assert!(!stdout.contains("client_secret"), "{stdout}");
    let rotate = run(db, &["clients", "rotate-secret", public_id]);
    assert_failure(&rotate, 1);
    assert!(String::from_utf8_lossy(&rotate.stderr).contains("public client has no secret"));

    // Every refusal is one line and exit 1, and registers nothing.
    let code_flow = ["--grant", "authorization_code"];
    for (extra, says) in [
        (&code_flow[..], "needs at least one redirect URI"),
        (
            &["--redirect-uri", "https://web.example/cb"][..],
            "redirect URIs are for clients with the authorization_code grant",
        ),
        (
            &[
                "--grant",
                "password",
                "--post-logout-redirect-uri",
                "https://web.example/bye",
            ][..],
            "redirect URIs are for clients with the authorization_code grant",
        ),
        (
            &[&code_flow[..], &["--redirect-uri", "http://web.example/cb"]].concat()[..],
            "must use https",
        ),
        (
            &[
                &code_flow[..],
                &["--redirect-uri", "https://web.example/cb#x"],
            ]
            .concat()[..],
            "fragment",
        ),
        (
            &[&code_flow[..], &["--redirect-uri", "/cb"]].concat()[..],
            "not an absolute URI",
        ),
        (
            &[
                &code_flow[..],
                &["--redirect-uri", "https://web.example/cb"],
                &["--post-logout-redirect-uri", "web.example/bye"],
            ]
            .concat()[..],
            "not an absolute URI",
        ),
        (
            &[
                &code_flow[..],
                &["--redirect-uri", "https://web.example/cb", "--public"],
                &["--grant", "password"],
            ]
            .concat()[..],
            "a public client may use only the authorization_code grant",
        ),
        (
            &["--public"][..],
            "a public client may use only the authorization_code grant",
        ),
    ] {
        let args = [
            &["clients", "create", "--name", "x", "--scopes", "openid"][..],
            extra,
        ]
        .concat();
        let output = run(db, &args);
        assert_failure(&output, 1);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    }
    assert_failure(
        &run(
            db,
            &[&public_args[..], &["--id-token-alg", "EdDSA"]].concat(),
        ),
        2,
    );
    let listed = json(&run(db, &["clients", "list", "--json"]));
    assert_eq!(
        listed.as_array().unwrap().len(),
        3,
        "two created with --json, one as text; refusals register nothing"
    );
}

/// `users create --name --email-verified`, `users set-profile` and what `users show` prints.
async fn user_profiles_from_the_cli(app: &TestApp) {
    let db = &app.db;
    let created = json(&run_with_stdin(
        db,
        &[
            "users",
            "create",
            "--email",
            "ada@example.com",
            "--name",
            "  Ada Lovelace ",
            "--email-verified",
            "--json",
        ],
        "correct horse battery\n",
    ));
    assert_eq!(created["display_name"], "Ada Lovelace", "trimmed");
    assert_eq!(created["email_verified"], true);
    let plain = json(&run_with_stdin(
        db,
        &["users", "create", "--email", "bo@example.com", "--json"],
        "correct horse battery\n",
    ));
    assert_eq!(
        (&plain["display_name"], &plain["email_verified"]),
        (&Value::Null, &Value::Bool(false))
    );
    let shown = json(&run(db, &["users", "show", "ada@example.com", "--json"]));
    assert_eq!(
        (&shown["display_name"], &shown["email_verified"]),
        (&Value::from("Ada Lovelace"), &Value::Bool(true))
    );
    let text = String::from_utf8(run(db, &["users", "show", "ada@example.com"]).stdout).unwrap();
    for line in ["display_name: Ada Lovelace", "email_verified: true"] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }

    let id = created["id"].as_str().unwrap();
    let changed = json(&run(
        db,
        &[
            "users",
            "set-profile",
            id,
            "--no-name",
            "--email-verified",
            "false",
            "--json",
        ],
    ));
    assert_eq!(
        (&changed["display_name"], &changed["email_verified"]),
        (&Value::Null, &Value::Bool(false))
    );
    let changed = json(&run(
        db,
        &[
            "users",
            "set-profile",
            "ada@example.com",
            "--name",
            "Countess",
            "--json",
        ],
    ));
    assert_eq!(
        (&changed["display_name"], &changed["email_verified"]),
        (&Value::from("Countess"), &Value::Bool(false)),
        "what is not given is kept"
    );
    let stored = app.store.find_user(id).await.unwrap().unwrap();
    assert_eq!(
        (stored.display_name.as_deref(), stored.email_verified),
        (Some("Countess"), false)
    );
    let changed = json(&run(
        db,
        &[
            "users",
            "set-profile",
            id,
            "--email-verified",
            "true",
            "--json",
        ],
    ));
    assert_eq!(
        (&changed["display_name"], &changed["email_verified"]),
        (&Value::from("Countess"), &Value::Bool(true))
    );

    for blank in ["", "  ", "Ada\tLovelace"] {
        let output = run(db, &["users", "set-profile", id, "--name", blank]);
        assert_failure(&output, 1);
        assert!(String::from_utf8_lossy(&output.stderr).contains("display name"));
    }
    assert_failure(
        &run_with_stdin(
            db,
            &[
                "users",
                "create",
                "--email",
                "cy@example.com",
                "--name",
                " ",
            ],
            "correct horse battery\n",
        ),
        1,
    );
    assert_failure(
        &run(
            db,
            &["users", "set-profile", "nobody@example.com", "--no-name"],
        ),
        1,
    );
    // Nothing to change, both --name and --no-name, or not a boolean: usage errors.
    assert_failure(&run(db, &["users", "set-profile", id]), 2);
    assert_failure(
        &run(
            db,
            &["users", "set-profile", id, "--name", "A", "--no-name"],
        ),
        2,
    );
    assert_failure(
        &run(db, &["users", "set-profile", id, "--email-verified", "yes"]),
        2,
    );
}

/// `users consents` lists a user's consents with the client's name; `consents revoke` withdraws
/// one (or all) and ends the user's sessions at that client (or every client): the refresh
/// token is refused and the access tokens issued from the family introspect as inactive. The
/// user's sessions elsewhere stay.
async fn consents_are_listed_and_revoked_from_the_cli(app: &TestApp) {
    use auth_server::admin::NewClient;
    use auth_server::model::GrantType;
    use secrecy::ExposeSecret;

    let db = &app.db;
    app.create_scopes(&["a"]).await;
    let user_id = app
        .create_user("ada@example.com", "correct horse battery", &["a"])
        .await;
    let mut clients = Vec::new();
    for name in ["web one", "web two"] {
        let mut new = NewClient::signing_in(name, ["openid", "a"], ["https://web.example/cb"]);
        new.grants.push(GrantType::Password);
        let registered = app.admin.register_client(new).await.unwrap();
        let secret = registered.secret.unwrap().expose_secret().to_owned();
        clients.push((registered.client.id, secret));
    }
    let login = async |(id, secret): &(String, String)| {
        let form = [
            ("grant_type", "password"),
            ("username", "ada@example.com"),
            ("password", "correct horse battery"),
            ("scope", "a"),
        ];
        let body: Value = app
            .token(&form, Some((id, secret)))
            .await
            .json()
            .await
            .unwrap();
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["refresh_token"].as_str().unwrap().to_owned(),
        )
    };
    let refresh = async |(id, secret): &(String, String), token: &str| {
        let form = [("grant_type", "refresh_token"), ("refresh_token", token)];
        app.token(&form, Some((id, secret))).await
    };
    let active = async |(id, secret): &(String, String), token: &str| {
        crate::introspection::introspect(app, (id, secret), token).await["active"].clone()
    };
    let sessions = [login(&clients[0]).await, login(&clients[1]).await];
    let at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let allowed: std::collections::BTreeSet<String> = ["openid", "a"].map(str::to_owned).into();
    for (client, _) in &clients {
        app.store
            .add_consent(&user_id, client, &allowed, at)
            .await
            .unwrap();
    }

    let listed = json(&run(
        db,
        &["users", "consents", "ada@example.com", "--json"],
    ));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let mut ids: Vec<&str> = clients.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    for (entry, id) in listed.iter().zip(&ids) {
        assert_eq!(
            keys(entry),
            ["client_id", "client_name", "granted_at", "scope"]
        );
        assert_eq!(entry["client_id"], *id, "by client id");
        assert_eq!(entry["scope"], "a openid");
        test_support::cli::assert_rfc3339_utc(entry["granted_at"].as_str().unwrap());
    }
    let text = String::from_utf8(run(db, &["users", "consents", &user_id]).stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{}\tweb one\ta openid\t", clients[0].0))),
        "{text}"
    );

    let revoked = json(&run(
        db,
        &[
            "consents",
            "revoke",
            "--user",
            "ada@example.com",
            "--client",
            &clients[0].0,
            "--json",
        ],
    ));
    assert_eq!(revoked["revoked_consents"], 1);
    assert_eq!(revoked["revoked_sessions"], 1);
    assert_eq!(revoked["user_id"], user_id.as_str());
    let left = app.store.list_consents(&user_id).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].client_id, clients[1].0, "the other consent stays");
    assert_eq!(active(&clients[0], &sessions[0].0).await, false);
    assert_eq!(refresh(&clients[0], &sessions[0].1).await.status(), 400);
    assert_eq!(
        active(&clients[1], &sessions[1].0).await,
        true,
        "the user's session at the other client stays"
    );
    let body: Value = refresh(&clients[1], &sessions[1].1)
        .await
        .json()
        .await
        .unwrap();
    let refreshed = body["access_token"].as_str().unwrap().to_owned();
    let fresh = login(&clients[0]).await;
    assert_eq!(
        active(&clients[0], &fresh.0).await,
        true,
        "no cutoff: a new login is valid"
    );

    // Without --client: every consent and every session of the user.
    let revoked = json(&run(
        db,
        &["consents", "revoke", "--user", &user_id, "--json"],
    ));
    assert_eq!(revoked["revoked_consents"], 1);
    assert_eq!(revoked["revoked_sessions"], 2);
    assert!(app.store.list_consents(&user_id).await.unwrap().is_empty());
    assert_eq!(active(&clients[1], &refreshed).await, false);
    assert_eq!(active(&clients[0], &fresh.0).await, false);
    let listed = json(&run(db, &["users", "consents", &user_id, "--json"]));
    assert_eq!(listed, serde_json::json!([]));

    assert_failure(
        &run(
            db,
            &["consents", "revoke", "--user", &user_id, "--client", "nope"],
        ),
        1,
    );
    assert_failure(
        &run(db, &["consents", "revoke", "--user", "nobody@example.com"]),
        1,
    );
    assert_failure(&run(db, &["users", "consents", "nobody@example.com"]), 1);
    assert_failure(&run(db, &["consents", "revoke"]), 2);
}

/// `users reset-password`, `users disable` and `users delete` end the user's browser sessions
/// (single sign-on); another user's session stays.
async fn user_events_end_browser_sessions(app: &TestApp) {
    use auth_server::model::BrowserSession;

    let db = &app.db;
    let ada = app
        .create_user("ada@example.com", "correct horse battery", &[])
        .await;
    let bo = app
        .create_user("bo@example.com", "correct horse battery", &[])
        .await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let session = |id: u8, user_id: &str| BrowserSession {
        id_hash: vec![id; 32],
        user_id: user_id.to_owned(),
        auth_time: now,
        last_seen: now,
        expires_at: now + 36_000,
        amr: "pwd".to_owned(),
    };
    let alive = async |id: u8| {
        app.store
            .find_browser_session(&[id; 32], now, now - 1800)
            .await
            .unwrap()
            .is_some()
    };
    app.store
        .insert_browser_session(&session(9, &bo))
        .await
        .unwrap();
    for (n, args) in [
        (1u8, vec!["users", "reset-password", &ada, "--json"]),
        (2, vec!["users", "disable", &ada, "--json"]),
        (3, vec!["users", "delete", &ada, "--json"]),
    ] {
        app.store
            .insert_browser_session(&session(n, &ada))
            .await
            .unwrap();
        assert!(alive(n).await);
        json(&run_with_stdin(db, &args, "a brand new passphrase\n"));
        assert!(!alive(n).await, "{args:?} ends the browser session");
    }
    assert!(alive(9).await, "another user's session stays");
}

/// The OpenID Connect identity scopes are built in: `scopes delete` refuses them.
#[test]
fn built_in_scopes_cannot_be_deleted() {
    let db = TestDb::sqlite();
    for name in ["openid", "profile", "email"] {
        let output = run(&db, &["scopes", "delete", name]);
        assert_failure(&output, 1);
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("built-in OpenID Connect scope"),
            "{name}"
        );
    }
    let scopes = json(&run(&db, &["scopes", "list", "--json"]));
    let names: Vec<&str> = scopes
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["email", "openid", "profile"]);
}

crate::on_both_backends!(
    sign_in_clients_from_the_cli,
    user_profiles_from_the_cli,
    consents_are_listed_and_revoked_from_the_cli,
    user_events_end_browser_sessions,
);
