//! A real auth server for other crates' tests (feature `testing`): started in-process on
//! 127.0.0.1:0 with a fresh SQLite database and a random `AUTH_SECRETS` (removed on drop),
//! plus helpers to register scopes, clients and users (through the server's [`Admin`], so the
//! admin rules apply) and to obtain tokens over HTTP;
//! [`process`] runs the binaries as an operator would, for process tests; [`CheckpointGate`]
//! holds a grant at a [`Checkpoint`] so a test can drive a race in a fixed order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod process;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use uuid::Uuid;

use crate::Application;
use crate::admin::{Admin, NewClient, NewUser};
use crate::config::ServerConfig;
use crate::grants::checkpoint::{Checkpoint, Checkpoints};
use crate::keys::{self, KeyRing};
use crate::model::GrantType;
use crate::sealed::SystemSecrets;
use crate::store::{self, Store};

/// Where PostgreSQL tests connect to create their databases.
fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The one rule for "are we in CI" and the Redis probe, re-exported for the crates whose tests
/// reach them through this module.
pub use test_support::{in_ci, redis_url};

/// A database, its `AUTH_SECRETS` and a directory that exist for one test and are removed
/// after it.
pub struct TestDb {
    pub url: String,
    pub dir: PathBuf,
    /// The `AUTH_SECRETS` value every process on this database is given.
    pub auth_secrets: SecretString,
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
            auth_secrets: SystemSecrets::generate_secret().unwrap(),
            postgres: None,
        }
    }

    /// [`TestDb::auth_secrets`] parsed, for a [`ServerConfig`].
    pub fn secrets(&self) -> SystemSecrets {
        SystemSecrets::from_list(&self.auth_secrets).unwrap()
    }

    /// The `AUTH_SECRETS` value, for a process's environment.
    pub fn auth_secrets(&self) -> &str {
        self.auth_secrets.expose_secret()
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
            auth_secrets: SystemSecrets::generate_secret().unwrap(),
            postgres: Some((admin, name)),
        })
    }

    /// A keys directory of the layout before migration 0005 (an import source only).
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

/// Holds the next grant that reaches an armed [`Checkpoint`] until the test releases it:
/// [`hold_next`](Self::hold_next), start the request, [`wait_until_held`](Self::wait_until_held),
/// do what must happen meanwhile, [`release`](Self::release). Unarmed it holds nothing. Install
/// it as [`ServerConfig::checkpoints`].
#[derive(Debug)]
pub struct CheckpointGate {
    armed: std::sync::Mutex<Option<Checkpoint>>,
    held: tokio::sync::Semaphore,
    released: tokio::sync::Semaphore,
}

impl CheckpointGate {
    /// How long [`wait_until_held`](Self::wait_until_held) waits for a grant to arrive.
    pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

    pub fn new() -> Arc<CheckpointGate> {
        Arc::new(CheckpointGate {
            armed: std::sync::Mutex::new(None),
            held: tokio::sync::Semaphore::new(0),
            released: tokio::sync::Semaphore::new(0),
        })
    }

    /// Holds the next grant (one) that reaches `at`.
    pub fn hold_next(&self, at: Checkpoint) {
        *self.armed.lock().unwrap() = Some(at);
    }

    /// Returns once a grant is held at the armed checkpoint; panics after [`Self::DEADLINE`].
    pub async fn wait_until_held(&self) {
        tokio::time::timeout(Self::DEADLINE, self.held.acquire())
            .await
            .expect("no grant reached the armed checkpoint")
            .unwrap()
            .forget();
    }

    /// Lets the held grant go on.
    pub fn release(&self) {
        self.released.add_permits(1);
    }
}

#[async_trait::async_trait]
impl Checkpoints for CheckpointGate {
    async fn reached(&self, checkpoint: Checkpoint) {
        let hold = {
            let mut armed = self.armed.lock().unwrap();
            let hold = *armed == Some(checkpoint);
            if hold {
                *armed = None;
            }
            hold
        };
        if hold {
            self.held.add_permits(1);
            if let Ok(permit) = self.released.acquire().await {
                permit.forget();
            }
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
    /// Its database, to check rows below the API.
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    /// The admin operations of the running server (register, revoke, rotate keys).
    pub admin: Admin,
    /// The secrets its database is sealed with (to read what they seal).
    pub secrets: SystemSecrets,
    /// Holds `auth.db`.
    pub dir: PathBuf,
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
        let config_url = config.database_url.clone();
        let app = Application::build(config)
            .await
            .expect("the test auth server starts");
        let base = format!("http://{}", app.local_addr());
        let issuer = app.issuer().to_owned();
        let keys = app.key_ring();
        let admin = app.admin();
        let secrets = app.secrets();
        let store = store::connect(&config_url).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        TestAuthServer {
            base,
            issuer,
            store,
            keys,
            admin,
            secrets,
            dir,
            http: reqwest::Client::new(),
            _shutdown: tx,
        }
    }

    /// The private key of `kid` as a PKCS#8 PEM (to forge tokens signed by a published key).
    pub async fn private_key_pem(&self, kid: &str) -> String {
        let stored = self.store.list_stored_keys().await.unwrap();
        let key = stored.iter().find(|k| k.record.kid == kid).unwrap();
        let der = keys::open_private_key(&self.secrets, key).unwrap();
        pem::encode(&pem::Pem::new("PRIVATE KEY", der.expose_secret().to_vec()))
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base)
    }

    /// Creates the scopes that do not exist yet.
    pub async fn ensure_scopes(&self, scopes: &[&str]) {
        let scopes: Vec<(&str, &str)> = scopes.iter().map(|name| (*name, "")).collect();
        self.admin.ensure_scopes(&scopes).await.unwrap();
    }

    /// Registers a client with `grants` (the admin rules apply: none means
    /// client_credentials, password implies refresh_token) allowed `scopes`, creating missing
    /// scopes; returns its id and secret.
    pub async fn client_with(&self, scopes: &[&str], grants: &[GrantType]) -> (String, String) {
        self.ensure_scopes(scopes).await;
        let registered = self
            .admin
            .register_client(NewClient::new(
                "test client",
                scopes.iter().copied(),
                grants.iter().copied(),
            ))
            .await
            .unwrap();
        (
            registered.client.id,
            registered.secret.expose_secret().to_owned(),
        )
    }

    /// Registers a client_credentials client allowed `scopes`.
    pub async fn client(&self, scopes: &[&str]) -> (String, String) {
        self.client_with(scopes, &[GrantType::ClientCredentials])
            .await
    }

    /// Registers a user with `permissions` (creating missing scopes); returns the user id.
    pub async fn user(&self, email: &str, password: &str, permissions: &[&str]) -> String {
        self.ensure_scopes(permissions).await;
        let new = NewUser::new(email, permissions.iter().copied()).unwrap();
        self.admin
            .register_user(new, SecretString::from(password.to_owned()))
            .await
            .unwrap()
            .id
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

/// The heading chains (`## …`, then `### …` when the table is under one) of every table in the
/// workspace README that documents flags (a row whose first cell holds a `` `--flag` ``), so a
/// test can see that each is checked by [`assert_readme_table_matches`].
pub fn readme_flag_tables() -> Vec<Vec<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md at the workspace root");
    let mut tables = Vec::new();
    let (mut h2, mut h3): (Option<&str>, Option<&str>) = (None, None);
    let mut in_code = false;
    let mut in_flag_table = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            (h2, h3) = (Some(heading), None);
        } else if let Some(heading) = line.strip_prefix("### ") {
            h3 = Some(heading);
        }
        if !line.starts_with('|') {
            in_flag_table = false;
            continue;
        }
        let first_cell = line.split('|').nth(1).unwrap_or_default();
        if first_cell.contains("`--") && !in_flag_table {
            in_flag_table = true;
            let chain = [
                h2.map(|h| format!("## {h}")),
                h3.map(|h| format!("### {h}")),
            ];
            tables.push(chain.into_iter().flatten().collect());
        }
    }
    tables
}

/// Checks the README table under `headings` against `commands` (built `clap` commands: a
/// binary, or the subcommands the table documents together), in both directions:
///
/// * every flag of a row is a long flag of at least one of the commands, and the row's env
///   cell names exactly the environment fallbacks of the row's flags, in order (nothing when
///   they have none);
/// * every long flag of every command (but `--help`, `--version` and hidden ones) has a row.
pub fn assert_readme_table_matches(headings: &[&str], commands: &[&clap::Command]) {
    use clap::ArgAction;
    let documented = |arg: &clap::Arg| {
        !arg.is_hide_set()
            && arg.get_long().is_some()
            && !matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    };
    let find = |flag: &str| -> Vec<&clap::Arg> {
        commands
            .iter()
            .flat_map(|command| command.get_arguments())
            .filter(|arg| {
                documented(arg) && arg.get_long().map(|l| format!("--{l}")) == Some(flag.to_owned())
            })
            .collect()
    };
    let rows = readme_flag_table(headings);
    let mut in_table = BTreeSet::new();
    for (flags, envs) in &rows {
        let mut expected_envs = Vec::new();
        for flag in flags {
            let args = find(flag);
            assert!(
                !args.is_empty(),
                "README {headings:?} documents `{flag}`, which the command does not take"
            );
            let env: BTreeSet<Option<String>> = args
                .iter()
                .map(|arg| arg.get_env().map(|e| e.to_string_lossy().into_owned()))
                .collect();
            assert_eq!(
                env.len(),
                1,
                "`{flag}` has different env fallbacks: {env:?}"
            );
            expected_envs.extend(env.into_iter().flatten());
            in_table.insert(flag.clone());
        }
        assert_eq!(
            envs, &expected_envs,
            "README {headings:?}: the env cell of {flags:?} does not name the flags' env fallbacks"
        );
    }
    for command in commands {
        for arg in command.get_arguments().filter(|arg| documented(arg)) {
            let flag = format!("--{}", arg.get_long().unwrap_or_default());
            assert!(
                in_table.contains(&flag),
                "`{} {flag}` is missing from the README table {headings:?}",
                command.get_name()
            );
        }
    }
}
