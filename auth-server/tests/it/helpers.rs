//! `TestApp`: a fresh database (SQLite file or PostgreSQL database with a random name) with
//! its own `AUTH_SECRETS`, and the real server bound to 127.0.0.1:0, its time rules reading a
//! [`ManualClock`] the test moves (`app.clock.advance(…)`), so no rule about time is tested by
//! waiting for it, and its grants passing a [`CheckpointGate`] the test can arm
//! (`app.gate.hold_next(…)`), so no race is tested by timing it.

use std::collections::BTreeSet;
use std::sync::Arc;

use auth_server::Application;
use auth_server::clock::ManualClock;
use auth_server::config::ServerConfig;
use auth_server::grants::TokenService;
use auth_server::grants::checkpoint::{Checkpoint, Checkpoints};
use auth_server::keys::KeyRing;
use auth_server::sealed::SystemSecrets;
use auth_server::secrets::{SecretHasher, generate_client_secret};
use auth_server::store::{self, Client, GrantType, Scope, Store, User};
use secrecy::ExposeSecret;
use uuid::Uuid;

pub use test_support::db::TestDb;

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

/// The running server and handles to its database.
pub struct TestApp {
    pub base: String,
    pub issuer: String,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    pub tokens: Arc<TokenService>,
    pub hasher: SecretHasher,
    /// The secrets the database is sealed with ([`TestDb::auth_secrets`]).
    pub secrets: SystemSecrets,
    pub http: reqwest::Client,
    pub db: TestDb,
    /// The clock of the refresh-token, client-cache and lock-out rules.
    pub clock: Arc<ManualClock>,
    /// Holds a grant at a checkpoint when armed ([`CheckpointGate::hold_next`]).
    pub gate: Arc<CheckpointGate>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    pub async fn spawn(db: TestDb) -> TestApp {
        TestApp::spawn_with(db, |_| {}).await
    }

    /// Starts the server with a configuration adjusted by `tweak`.
    pub async fn spawn_with(db: TestDb, tweak: impl FnOnce(&mut ServerConfig)) -> TestApp {
        let mut config = TestApp::config(&db);
        let clock = Arc::new(ManualClock::starting_now());
        config.clock = clock.clone();
        let gate = CheckpointGate::new();
        config.checkpoints = Some(gate.clone());
        tweak(&mut config);
        let app = Application::build(config).await.expect("server starts");
        let tokens = app.tokens();
        let base = format!("http://{}", app.local_addr());
        let issuer = app.issuer().to_owned();
        let keys = app.key_ring();
        let hasher = app.secret_hasher();
        let secrets = app.secrets();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let store = store::connect(&db.url).await.unwrap();
        TestApp {
            base,
            issuer,
            store,
            keys,
            tokens,
            hasher,
            secrets,
            http: reqwest::Client::new(),
            db,
            clock,
            gate,
            _shutdown: tx,
        }
    }

    /// The default configuration of a server on `db` (with its `AUTH_SECRETS`), on port 0.
    pub fn config(db: &TestDb) -> ServerConfig {
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), &db.url, db.keys_dir());
        config.secrets = Some(SystemSecrets::from_list(&db.auth_secrets).unwrap());
        config
    }

    pub async fn sqlite() -> TestApp {
        TestApp::spawn(TestDb::sqlite()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn create_scopes(&self, names: &[&str]) {
        for name in names {
            let scope = Scope {
                name: (*name).to_owned(),
                description: String::new(),
                created_at: time::OffsetDateTime::now_utc(),
            };
            self.store.create_scope(&scope).await.unwrap();
        }
    }

    /// Creates those of `names` that do not exist yet.
    async fn ensure_scopes(&self, names: &[&str]) {
        let existing: BTreeSet<String> = self
            .store
            .list_scopes()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|s| !existing.contains(*s))
            .collect();
        self.create_scopes(&missing).await;
    }

    /// Registers a client (creating missing scopes) and returns its id and secret.
    pub async fn create_client(&self, scopes: &[&str], grants: &[GrantType]) -> (String, String) {
        self.ensure_scopes(scopes).await;
        let secret = generate_client_secret().unwrap().expose_secret().to_owned();
        let client = Client {
            id: Uuid::new_v4().to_string(),
            name: "test client".to_owned(),
            secret_hash: self.hasher.hash(&secret),
            grant_types: grants.iter().copied().collect(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            disabled: false,
            created_at: time::OffsetDateTime::now_utc(),
        };
        self.store.create_client(&client).await.unwrap();
        (client.id, secret)
    }

    /// Registers a user (creating missing scopes) and returns their id.
    pub async fn create_user(&self, email: &str, password: &str, permissions: &[&str]) -> String {
        self.ensure_scopes(permissions).await;
        let password = password.to_owned();
        let password_hash =
            tokio::task::spawn_blocking(move || auth_server::passwords::hash_password(&password))
                .await
                .unwrap()
                .unwrap();
        let user = User {
            id: Uuid::new_v4().to_string(),
            email: email.to_owned(),
            password_hash,
            permissions: permissions.iter().map(|s| (*s).to_owned()).collect(),
            disabled: false,
            created_at: time::OffsetDateTime::now_utc(),
        };
        self.store.create_user(&user).await.unwrap();
        user.id
    }

    /// A form POST to `path` with HTTP Basic credentials.
    pub async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
        basic: (&str, &str),
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .form(form)
            .basic_auth(basic.0, Some(basic.1))
            .send()
            .await
            .unwrap()
    }

    /// `POST /oauth/token` with a form body and optional HTTP Basic credentials.
    pub async fn token(
        &self,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url("/oauth/token")).form(form);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        request.send().await.unwrap()
    }
}

/// Runs async test bodies against SQLite and against PostgreSQL, optionally with a
/// configuration tweak: `on_both_backends!(tweak = |c| ..., test_a, test_b)`.
#[macro_export]
macro_rules! on_both_backends {
    (tweak = $tweak:expr, $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = $crate::helpers::TestDb::sqlite();
                    super::$name(&$crate::helpers::TestApp::spawn_with(db, $tweak).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = $crate::helpers::TestDb::postgres().await {
                        super::$name(&$crate::helpers::TestApp::spawn_with(db, $tweak).await).await;
                    }
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_both_backends!(tweak = |_| {}, $($name),*);
    };
}
