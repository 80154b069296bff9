//! A real auth server for other crates' tests (feature `testing`): started in-process on
//! 127.0.0.1:0 with a fresh SQLite database and keys directory (removed on drop), plus helpers
//! to register scopes, clients and users and to obtain tokens over HTTP; [`process`] runs the
//! binaries as an operator would, for process tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod process;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::ExposeSecret;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Application;
use crate::config::ServerConfig;
use crate::keys::KeyRing;
use crate::passwords::hash_password;
use crate::secrets::{SecretHasher, generate_client_secret};
use crate::store::{Client, GrantType, Scope, Store, User};

/// Where PostgreSQL tests connect to create their databases.
fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The one rule for "are we in CI" and the Redis probe, re-exported for the crates whose tests
/// reach them through this module.
pub use test_support::{in_ci, redis_url};

/// A database and keys directory that exist for one test and are removed after it.
pub struct TestDb {
    pub url: String,
    pub dir: PathBuf,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("test-db-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite:{}", dir.join("auth.db").display());
        TestDb {
            url,
            dir,
            postgres: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a message) when the server is unreachable
    /// outside CI. In CI ([`in_ci`]) an unreachable server fails the test.
    pub async fn postgres() -> Option<TestDb> {
        use sqlx::Connection;
        let admin = postgres_admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(err) => {
                return test_support::skip_unless_ci(&format!(
                    "PostgreSQL unreachable at {admin}: {err}"
                ));
            }
        };
        let name = format!("test_{}", Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin);
        let dir = std::env::temp_dir().join(format!("test-db-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Some(TestDb {
            url: format!("{base}/{name}"),
            dir,
            postgres: Some((admin, name)),
        })
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((admin, name)) = self.postgres.take() {
            // Drop runs outside any runtime guarantee: use a private one on a plain thread.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(&sql).execute(&mut conn).await;
                    }
                });
            })
            .join();
        }
    }
}

/// Deletes every Redis key under `prefix:` (the end of a test that used its own prefix).
pub async fn delete_redis_prefix(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// A running auth server; stops when dropped.
pub struct TestAuthServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The `iss` of its tokens.
    pub issuer: String,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    /// Holds `auth.db` and `keys/`.
    pub dir: PathBuf,
    hasher: SecretHasher,
    http: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Drop for TestAuthServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestAuthServer {
    /// Starts a server with the default configuration.
    pub async fn spawn() -> TestAuthServer {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed its configuration.
    pub async fn spawn_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestAuthServer {
        let dir = std::env::temp_dir().join(format!("auth-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite:{}", dir.join("auth.db").display());
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), &url, dir.join("keys"));
        adjust(&mut config);
        let app = Application::build(config)
            .await
            .expect("the test auth server starts");
        let base = format!("http://{}", app.local_addr());
        let issuer = app.issuer().to_owned();
        let keys = app.key_ring();
        let store = app.store();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let hasher = SecretHasher::from_config(None, &dir.join("keys")).unwrap();
        TestAuthServer {
            base,
            issuer,
            store,
            keys,
            dir,
            hasher,
            http: reqwest::Client::new(),
            _shutdown: tx,
        }
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base)
    }

    /// Creates the scopes that do not exist yet.
    pub async fn ensure_scopes(&self, scopes: &[&str]) {
        let existing: BTreeSet<String> = self
            .store
            .list_scopes()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        for name in scopes.iter().filter(|s| !existing.contains(**s)) {
            let scope = Scope {
                name: (*name).to_owned(),
                description: String::new(),
                created_at: OffsetDateTime::now_utc(),
            };
            self.store.create_scope(&scope).await.unwrap();
        }
    }

    /// Registers a client with `grants` allowed `scopes`; returns its id and secret.
    pub async fn client_with(&self, scopes: &[&str], grants: &[GrantType]) -> (String, String) {
        self.ensure_scopes(scopes).await;
        let secret = generate_client_secret().unwrap().expose_secret().to_owned();
        let client = Client {
            id: Uuid::new_v4().to_string(),
            name: "test client".to_owned(),
            secret_hash: self.hasher.hash(&secret),
            grant_types: grants.iter().copied().collect(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            disabled: false,
            created_at: OffsetDateTime::now_utc(),
        };
        self.store.create_client(&client).await.unwrap();
        (client.id, secret)
    }

    /// Registers a client_credentials client allowed `scopes`.
    pub async fn client(&self, scopes: &[&str]) -> (String, String) {
        self.client_with(scopes, &[GrantType::ClientCredentials])
            .await
    }

    /// Registers a user with `permissions`; returns the user id.
    pub async fn user(&self, email: &str, password: &str, permissions: &[&str]) -> String {
        self.ensure_scopes(permissions).await;
        let user = User {
            id: Uuid::new_v4().to_string(),
            email: email.to_owned(),
            password_hash: hash_password(password).unwrap(),
            permissions: permissions.iter().map(|s| (*s).to_owned()).collect(),
            disabled: false,
            created_at: OffsetDateTime::now_utc(),
        };
        self.store.create_user(&user).await.unwrap();
        user.id
    }

    /// `POST /oauth/token` with HTTP Basic client authentication; the JSON answer (asserting
    /// 200).
    pub async fn grant(&self, client: &(String, String), form: &[(&str, &str)]) -> Value {
        let response = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(&client.0, Some(&client.1))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "token request refused: {body}");
        body
    }

    /// A client_credentials access token of `client` (all its scopes).
    pub async fn client_token(&self, client: &(String, String)) -> String {
        let body = self
            .grant(client, &[("grant_type", "client_credentials")])
            .await;
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A client_credentials access token of a new client allowed `scopes`.
    pub async fn token(&self, scopes: &[&str]) -> String {
        let client = self.client(scopes).await;
        self.client_token(&client).await
    }
}

/// The flag and environment names of the first table under `headings` (each heading found
/// after the previous one) in the workspace README: one `(flags, envs)` pair per row, taken
/// from the `` `--flag` `` and `` `ENV` `` spans of the row's first two cells.
pub fn readme_flag_table(headings: &[&str]) -> Vec<(Vec<String>, Vec<String>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md at the workspace root");
    let mut lines = readme.lines();
    for heading in headings {
        assert!(
            lines.by_ref().any(|line| line.trim() == *heading),
            "README has no `{heading}` heading"
        );
    }
    let spans = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let rows: Vec<(Vec<String>, Vec<String>)> = lines
        .take_while(|line| !line.starts_with('#'))
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let flags: Vec<String> = spans(cells.get(1)?)
                .into_iter()
                .filter(|f| f.starts_with("--"))
                .collect();
            (!flags.is_empty()).then(|| (flags, spans(cells.get(2).unwrap_or(&""))))
        })
        .collect();
    assert!(!rows.is_empty(), "no flag table under {headings:?}");
    rows
}

/// Asserts that every flag and environment variable of the README table under `headings`
/// appears in `help` (a command's rendered `--help`), so the two cannot drift apart.
pub fn assert_readme_flags_in_help(headings: &[&str], help: &str) {
    for (flags, envs) in readme_flag_table(headings) {
        for flag in &flags {
            let listed = help
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[')
                .any(|word| word == flag);
            assert!(
                listed,
                "README {headings:?} documents `{flag}`, which --help does not list"
            );
        }
        for env in &envs {
            assert!(
                help.contains(&format!("[env: {env}")),
                "README {headings:?} documents `{env}` for {flags:?}, which --help does not list"
            );
        }
    }
}
