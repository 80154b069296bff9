//! The services are stateless: private signing keys and the client-secret pepper live in the
//! database, sealed with `AUTH_SECRETS`. Servers and the CLI that share nothing but
//! `DATABASE_URL` and `AUTH_SECRETS`; a wrong or missing secret; the one-time import of an
//! earlier version's keys directory; `keys import`; rotating the secret itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use auth_server::Application;
use auth_server::config::ServerConfig;
use auth_server::keys::SigningKey;
use auth_server::model::{Client, GrantType, KeyAlgorithm, KeyRecord, KeyState, Scope};
use auth_server::sealed::SystemSecrets;
use auth_server::store;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair,
};
use jsonwebtoken::decode_header;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use test_support::process::ServiceProcess;

use crate::helpers::{TestApp, TestDb};
use crate::token::verify;

/// `auth-server` in `cwd` with an empty environment but `DATABASE_URL` and `env`.
fn auth_server(cwd: &Path, database_url: &str, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_auth-server"));
    command
        .current_dir(cwd)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null());
    command
}

/// Runs the CLI in `cwd` and returns its output.
fn cli(cwd: &Path, database_url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    auth_server(cwd, database_url, env, args).output().unwrap()
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Exit code 1 (or, for `serve`, any failure) with one line on stderr containing `expected`.
fn assert_refused(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "succeeded; stderr: {stderr}");
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(expected), "`{expected}` in: {stderr}");
}

/// A fresh empty directory under `root`.
fn empty_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_still_empty(dir: &Path) {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(entries.is_empty(), "{} holds {entries:?}", dir.display());
}

/// An `auth-server serve` process in `cwd` on 127.0.0.1:0 with JSON logs (kept in
/// `log_dir`), only `DATABASE_URL` and `AUTH_SECRETS` for configuration; killed on drop.
fn serve(cwd: &Path, log_dir: &Path, database_url: &str, secrets: &str) -> ServiceProcess {
    ServiceProcess::spawn_in(
        cwd,
        env!("CARGO_BIN_EXE_auth-server"),
        &["serve", "--bind", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", database_url.to_owned()),
            ("AUTH_SECRETS", secrets.to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
        ],
        log_dir,
    )
}

/// Waits (at most 30 s) for a process that is expected to exit by itself.
fn wait_for_exit(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A client_credentials token from the server at `base`, and its `kid`.
async fn token_from(http: &reqwest::Client, base: &str, client: (&str, &str)) -> (String, String) {
    let response = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(client.0, Some(client.1))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{base}: {body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let kid = decode_header(&token).unwrap().kid.unwrap();
    (token, kid)
}

async fn jwks_of(http: &reqwest::Client, base: &str) -> Value {
    http.get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The scenario: two servers and the CLI, each in its own empty working directory, on
/// one PostgreSQL database, started at the same moment on a fresh database.
#[tokio::test]
async fn two_servers_and_the_cli_share_only_the_database_url_and_the_secret() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let secrets = db.auth_secrets().to_owned();
    let (first_dir, second_dir, cli_dir) = (
        empty_dir(&db.dir, "first"),
        empty_dir(&db.dir, "second"),
        empty_dir(&db.dir, "cli"),
    );
    // Both start on the fresh database at once: one pepper and one active key per algorithm
    // (ES256 for access tokens, RS256 for id_tokens) result.
    let mut first = serve(&first_dir, &db.dir.join("first-log"), &db.url, &secrets);
    let mut second = serve(&second_dir, &db.dir.join("second-log"), &db.url, &secrets);
    let first_base = format!(
        "http://{}",
        first.wait_for_addr("auth-server listening").await
    );
    let second_base = format!(
        "http://{}",
        second.wait_for_addr("auth-server listening").await
    );

    let env = [("AUTH_SECRETS", secrets.as_str())];
    json(&cli(
        &cli_dir,
        &db.url,
        &env,
        &["scopes", "create", "a", "--json"],
    ));
    let created = json(&cli(
        &cli_dir,
        &db.url,
        &env,
        &[
            "clients", "create", "--name", "x", "--scopes", "a", "--json",
        ],
    ));
    let client = (
        created["client_id"].as_str().unwrap(),
        created["client_secret"].as_str().unwrap(),
    );
    let http = reqwest::Client::new();
    let (_, first_kid) = token_from(&http, &first_base, client).await;
    let (_, second_kid) = token_from(&http, &second_base, client).await;
    assert_eq!(first_kid, second_kid, "one active access-token key");
    let jwks = jwks_of(&http, &first_base).await;
    let mut algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    algs.sort_unstable();
    assert_eq!(algs, ["ES256", "RS256"], "one key per algorithm");
    assert_eq!(jwks, jwks_of(&http, &second_base).await, "the same JWKS");

    let rotations = json(&cli(&cli_dir, &db.url, &env, &["keys", "rotate", "--json"]));
    let rotation = &rotations[0];
    assert_eq!(rotation["alg"], "ES256");
    let activated = rotation["activated"].as_str().unwrap();
    // Each server re-reads its keys every 10 s.
    for base in [&first_base, &second_base] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, kid) = token_from(&http, base, client).await;
            if kid == activated {
                break;
            }
            assert!(Instant::now() < deadline, "{base} still signs with {kid}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    assert_eq!(
        jwks_of(&http, &first_base).await,
        jwks_of(&http, &second_base).await
    );
    let pepper_rows = store::connect(&db.url)
        .await
        .unwrap()
        .list_system_secrets()
        .await
        .unwrap();
    assert_eq!(pepper_rows.len(), 1, "one pepper");
    drop((first, second));
    for dir in [&first_dir, &second_dir, &cli_dir] {
        assert_still_empty(dir);
    }
}

/// What the database holds, to show that a refused process wrote nothing.
async fn snapshot(
    url: &str,
) -> (
    Vec<String>,
    Vec<(String, Option<Vec<u8>>)>,
    Vec<(String, Vec<u8>)>,
) {
    let store = store::connect(url).await.unwrap();
    let clients = store.list_clients().await.unwrap();
    let keys = store.list_stored_keys().await.unwrap();
    (
        clients.into_iter().map(|c| c.id).collect(),
        keys.into_iter()
            .map(|k| (k.record.kid, k.sealed_private_key))
            .collect(),
        store.list_system_secrets().await.unwrap(),
    )
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_refused_with_one_line_and_nothing_is_written() {
    let db = TestDb::sqlite();
    let cwd = empty_dir(&db.dir, "cwd");
    let right = [("AUTH_SECRETS", db.auth_secrets())];
    json(&cli(&cwd, &db.url, &right, &["keys", "generate", "--json"]));
    json(&cli(
        &cwd,
        &db.url,
        &right,
        &["clients", "create", "--name", "x", "--json"],
    ));
    let before = snapshot(&db.url).await;

    let wrong = SystemSecrets::generate_secret().unwrap();
    let cases = [
        (vec![], "AUTH_SECRETS is required ("),
        (
            vec![("AUTH_SECRETS", wrong.expose_secret())],
            "AUTH_SECRETS does not match this database: ",
        ),
    ];
    for (env, expected) in &cases {
        let serve = auth_server(&cwd, &db.url, env, &["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert_refused(&wait_for_exit(serve), expected);
        for args in [
            &["clients", "create", "--name", "y"][..],
            &["clients", "rotate-secret", &before.0[0]],
            &["keys", "rotate"],
            &["keys", "import", "--pem", "missing.pem"],
            &["secrets", "reencrypt"],
            &["migrate"],
        ] {
            assert_refused(&cli(&cwd, &db.url, env, args), expected);
        }
    }
    // Given a wrong secret, even a command that needs none refuses.
    let env = [("AUTH_SECRETS", wrong.expose_secret())];
    assert_refused(
        &cli(&cwd, &db.url, &env, &["scopes", "create", "b"]),
        "AUTH_SECRETS does not match",
    );
    // Commands that need no secret run without one.
    json(&cli(&cwd, &db.url, &[], &["keys", "list", "--json"]));
    assert_refused(
        &cli(
            &cwd,
            &db.url,
            &[("AUTH_SECRETS", "too short")],
            &["migrate"],
        ),
        "at least 32 bytes",
    );
    assert_eq!(snapshot(&db.url).await, before, "nothing written");
    assert_still_empty(&cwd);
}

/// Keys of an earlier version's layout: `<kid>.pem` files and `client-secret-pepper` in the
/// keys directory, key rows without private keys, a client hashed with the file's pepper.
struct LegacyLayout {
    client: (String, String),
    active: String,
    next: String,
    pepper: Vec<u8>,
}

fn pem_of(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec()))
}

async fn legacy_layout(db: &TestDb) -> LegacyLayout {
    let store = store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let dir = db.keys_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let rng = SystemRandom::new();
    let now = OffsetDateTime::now_utc();
    let record = |kid: &str, alg, state, retired_at| KeyRecord {
        kid: kid.to_owned(),
        alg,
        state,
        created_at: now,
        activated_at: None,
        retired_at,
    };
    let es256 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let eddsa = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    for (key, pem) in [
        (
            record("old-active", KeyAlgorithm::ES256, KeyState::Active, None),
            Some(pem_of(es256.as_ref())),
        ),
        (
            record("old-next", KeyAlgorithm::EdDSA, KeyState::Next, None),
            Some(pem_of(eddsa.as_ref())),
        ),
        // Retired two days ago, its file long deleted: no longer published, skipped.
        (
            record(
                "long-retired",
                KeyAlgorithm::ES256,
                KeyState::Retired,
                Some(now - time::Duration::days(2)),
            ),
            None,
        ),
    ] {
        store.insert_key(&key, b"placeholder").await.unwrap();
        if let Some(pem) = pem {
            std::fs::write(dir.join(format!("{}.pem", key.kid)), pem).unwrap();
        }
    }
    crate::store::execute(&db.url, "UPDATE signing_keys SET private_key = NULL", &[]).await;

    // The earlier version's pepper (32 random bytes) and a client secret stored, as then, as
    // HMAC-SHA-256 under it (README, "Admin CLI").
    let mut pepper = vec![0u8; 32];
    rng.fill(&mut pepper).unwrap();
    std::fs::write(dir.join("client-secret-pepper"), &pepper).unwrap();
    store
        .create_scope(&Scope {
            name: "a".to_owned(),
            description: String::new(),
            created_at: now,
        })
        .await
        .unwrap();
    let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let client = Client {
        id: Uuid::new_v4().to_string(),
        name: "from before".to_owned(),
        secret_hash: hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &pepper),
            secret.as_bytes(),
        )
        .as_ref()
        .to_vec(),
        grant_types: [GrantType::ClientCredentials].into(),
        scopes: ["a".to_owned()].into(),
        disabled: false,
        created_at: now,
        public: false,
        first_party: false,
        id_token_alg: Default::default(),
        redirect_uris: Vec::new(),
        post_logout_redirect_uris: Vec::new(),
    };
    store.create_client(&client).await.unwrap();
    LegacyLayout {
        client: (client.id, secret),
        active: "old-active".to_owned(),
        next: "old-next".to_owned(),
        pepper,
    }
}

/// Starts another server on `config`; returns its base URL and the handle that stops it.
async fn spawn_server(config: ServerConfig) -> (String, tokio::sync::oneshot::Sender<()>) {
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    (base, tx)
}

async fn the_legacy_keys_directory_is_imported_once(db: TestDb) {
    let legacy = legacy_layout(&db).await;
    let app = TestApp::spawn(db).await;
    let client = (legacy.client.0.as_str(), legacy.client.1.as_str());
    let response = app
        .token(&[("grant_type", "client_credentials")], Some(client))
        .await;
    assert_eq!(response.status(), 200, "the old client secret still works");
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        decode_header(token).unwrap().kid.as_deref(),
        Some(legacy.active.as_str()),
        "the old active key still signs"
    );
    verify(&app, token).await;
    // The RS256 key generated at start (the layout had none active) aside.
    let current = app.keys.current();
    let rs256 = current
        .active(KeyAlgorithm::RS256)
        .unwrap()
        .kid()
        .to_owned();
    let kids: Vec<String> = current
        .published
        .keys()
        .filter(|kid| **kid != rs256)
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        kids,
        [legacy.active.clone(), legacy.next.clone()],
        "the long-retired key is not"
    );

    // Imported once: without the files another instance starts and accepts the same client.
    std::fs::remove_dir_all(app.db.keys_dir()).unwrap();
    let (base, _stop) = spawn_server(TestApp::config(&app.db)).await;
    let (_, kid) = token_from(&app.http, &base, client).await;
    assert_eq!(kid, legacy.active);
    let stored = app
        .store
        .find_system_secret("client-secret-pepper")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        app.secrets
            .open(
                auth_server::sealed::Purpose::SystemSecret("client-secret-pepper"),
                &stored
            )
            .unwrap()
            .expose_secret(),
        &legacy.pepper[..]
    );

    // A CLIENT_SECRET_PEPPER that is not the stored pepper is refused.
    let mut config = TestApp::config(&app.db);
    config.client_secret_pepper = Some(SecretString::from("another pepper of at least 32 bytes!"));
    let refused = Application::build(config).await.err().unwrap().to_string();
    assert!(
        refused.contains("CLIENT_SECRET_PEPPER differs"),
        "{refused}"
    );
}

async fn a_missing_file_of_a_needed_key_is_named(db: TestDb) {
    let legacy = legacy_layout(&db).await;
    let lost = db.keys_dir().join(format!("{}.pem", legacy.next));
    std::fs::remove_file(&lost).unwrap();
    let refused = Application::build(TestApp::config(&db))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(refused.contains(&lost.display().to_string()), "{refused}");
    assert!(refused.contains("next"), "{refused}");
}

async fn without_the_old_pepper_the_clients_are_not_given_a_new_one(db: TestDb) {
    legacy_layout(&db).await;
    std::fs::remove_file(db.keys_dir().join("client-secret-pepper")).unwrap();
    let refused = Application::build(TestApp::config(&db))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(refused.contains("no client-secret pepper"), "{refused}");
    let store = store::connect(&db.url).await.unwrap();
    assert!(store.list_system_secrets().await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_the_legacy_keys_directory_is_imported_once() {
    the_legacy_keys_directory_is_imported_once(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_the_legacy_keys_directory_is_imported_once() {
    if let Some(db) = TestDb::postgres().await {
        the_legacy_keys_directory_is_imported_once(db).await;
    }
}

#[tokio::test]
async fn sqlite_a_missing_file_of_a_needed_key_is_named() {
    a_missing_file_of_a_needed_key_is_named(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_a_missing_file_of_a_needed_key_is_named() {
    if let Some(db) = TestDb::postgres().await {
        a_missing_file_of_a_needed_key_is_named(db).await;
    }
}

#[tokio::test]
async fn sqlite_without_the_old_pepper_the_clients_are_not_given_a_new_one() {
    without_the_old_pepper_the_clients_are_not_given_a_new_one(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_without_the_old_pepper_the_clients_are_not_given_a_new_one() {
    if let Some(db) = TestDb::postgres().await {
        without_the_old_pepper_the_clients_are_not_given_a_new_one(db).await;
    }
}

#[tokio::test]
async fn keys_import_adds_es256_rs256_and_eddsa_keys_as_next() {
    let app = TestApp::sqlite().await;
    let dir = empty_dir(&app.db.dir, "import");
    let rng = SystemRandom::new();
    let es256 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .unwrap()
        .as_ref()
        .to_vec();
    let rs256 = {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair.as_der().unwrap();
        der.as_ref().to_vec()
    };
    let eddsa = Ed25519KeyPair::generate_pkcs8(&rng)
        .unwrap()
        .as_ref()
        .to_vec();
    let env = [("AUTH_SECRETS", app.db.auth_secrets())];
    let mut imported = Vec::new();
    for (name, der, alg, flag) in [
        ("es256.pem", &es256, KeyAlgorithm::ES256, None),
        ("rs256.pem", &rs256, KeyAlgorithm::RS256, Some("RS256")),
        ("eddsa.pem", &eddsa, KeyAlgorithm::EdDSA, None),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, pem_of(der)).unwrap();
        let mut args = vec!["keys", "import", "--pem", file.to_str().unwrap(), "--json"];
        args.extend(flag.map(|alg| ["--alg", alg]).into_iter().flatten());
        let record = json(&cli(&dir, &app.db.url, &env, &args));
        assert_eq!(record["alg"], alg.as_str(), "{name}");
        assert_eq!(record["state"], "next", "{name}");
        imported.push((record["kid"].as_str().unwrap().to_owned(), alg, der.clone()));
    }
    let text = cli(
        &dir,
        &app.db.url,
        &env,
        &[
            "keys",
            "import",
            "--pem",
            dir.join("eddsa.pem").to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&text.stdout).contains("imported as next"));

    // A key of another algorithm than named, a file that is no key, a missing file.
    std::fs::write(dir.join("garbage.pem"), "not a key at all").unwrap();
    std::fs::write(
        dir.join("sec1.pem"),
        pem::encode(&pem::Pem::new("EC PRIVATE KEY", vec![1, 2, 3])),
    )
    .unwrap();
    for (file, alg) in [
        ("rs256.pem", Some("ES256")),
        ("garbage.pem", None),
        ("sec1.pem", None),
        ("missing.pem", None),
    ] {
        let path = dir.join(file);
        let mut args = vec!["keys", "import", "--pem", path.to_str().unwrap()];
        args.extend(alg.map(|alg| ["--alg", alg]).into_iter().flatten());
        assert_refused(
            &cli(&dir, &app.db.url, &env, &args),
            &path.display().to_string(),
        );
    }

    // Published as they are; a rotation promotes the ES256 and the RS256 key (the chains with
    // an active key), and the ES256 one signs access tokens.
    app.keys.reload().await.unwrap();
    let keys = app.keys.current();
    for (kid, alg, der) in &imported {
        let ours = SigningKey::from_pkcs8(kid, *alg, der).unwrap();
        assert_eq!(keys.published[kid].public_jwk(), ours.public_jwk());
    }
    let rotations = json(&cli(&dir, &app.db.url, &env, &["keys", "rotate", "--json"]));
    assert_eq!(rotations.as_array().unwrap().len(), 2, "{rotations}");
    assert_eq!(rotations[0]["alg"], "ES256");
    assert_eq!(rotations[0]["activated"], imported[0].0.as_str());
    assert_eq!(rotations[1]["alg"], "RS256");
    assert_eq!(rotations[1]["activated"], imported[1].0.as_str());
    app.keys.reload().await.unwrap();
    let (id, secret) = app
        .create_client(&["a"], &[GrantType::ClientCredentials])
        .await;
    let (token, kid) = token_from(&app.http, &app.base, (&id, &secret)).await;
    assert_eq!(kid, imported[0].0);
    verify(&app, &token).await;
}

/// Prepend a new secret, re-encrypt, drop the old one: everything still opens.
#[tokio::test]
async fn the_secret_is_rotated_by_prepending_reencrypting_and_dropping_the_old_one() {
    let app = TestApp::sqlite().await;
    let cwd = empty_dir(&app.db.dir, "cwd");
    let (id, secret) = app
        .create_client(&["a"], &[GrantType::ClientCredentials])
        .await;
    let signing_kid = app.keys.current().access().kid().to_owned();
    let old = app.db.auth_secrets().to_owned();
    let new = SystemSecrets::generate_secret().unwrap();
    let new = new.expose_secret();

    let both = format!("{new},{old}");
    let env = [("AUTH_SECRETS", both.as_str())];
    let generated = json(&cli(
        &cwd,
        &app.db.url,
        &env,
        &["keys", "generate", "--json"],
    ));
    let done = json(&cli(
        &cwd,
        &app.db.url,
        &env,
        &["secrets", "reencrypt", "--json"],
    ));
    assert_eq!(
        (done["reencrypted"].as_u64(), done["unchanged"].as_u64()),
        (Some(3), Some(1)),
        "the pepper and the first keys (ES256, RS256); the key generated under the new secret already was"
    );
    let again = json(&cli(
        &cwd,
        &app.db.url,
        &env,
        &["secrets", "reencrypt", "--json"],
    ));
    assert_eq!(
        (again["reencrypted"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(4))
    );

    // The old secret alone no longer opens the database.
    assert_refused(
        &cli(
            &cwd,
            &app.db.url,
            &[("AUTH_SECRETS", &old)],
            &["clients", "create", "--name", "x"],
        ),
        "AUTH_SECRETS does not match this database",
    );
    // The new one alone (here from a file) does: a server signs with the same key and the
    // client's secret still verifies, and the CLI rotates.
    let file = cwd.join("auth-secrets");
    std::fs::write(&file, format!("\n{new}\n\n")).unwrap();
    let mut config = TestApp::config(&app.db);
    config.secrets =
        Some(SystemSecrets::from_lines(&SecretString::from(format!("{new}\n"))).unwrap());
    let (base, _stop) = spawn_server(config).await;
    let (_, kid) = token_from(&app.http, &base, (&id, &secret)).await;
    assert_eq!(kid, signing_kid);
    let env = [("AUTH_SECRETS_FILE", file.to_str().unwrap())];
    let rotations = json(&cli(&cwd, &app.db.url, &env, &["keys", "rotate", "--json"]));
    assert_eq!(rotations[0]["alg"], "ES256");
    assert_eq!(rotations[0]["activated"], generated["kid"]);
    assert_refused(
        &cli(
            &cwd,
            &app.db.url,
            &[
                ("AUTH_SECRETS_FILE", file.to_str().unwrap()),
                ("AUTH_SECRETS", &old),
            ],
            &["keys", "rotate"],
        ),
        "not both",
    );
}
