//! `TestApp`: a fresh database (SQLite file or PostgreSQL database with a random name) with
//! its own `AUTH_SECRETS`, and the real server bound to 127.0.0.1:0, its time rules reading a
//! [`ManualClock`] the test moves (`app.clock.advance(…)`), so no rule about time is tested by
//! waiting for it, and its grants passing a [`CheckpointGate`] the test can arm
//! (`app.gate.hold_next(…)`), so no race is tested by timing it.

use std::sync::Arc;

use auth_server::Application;
use auth_server::admin::{Admin, AdminOptions, NewClient, NewUser};
use auth_server::clock::ManualClock;
use auth_server::config::ServerConfig;
use auth_server::grants::TokenService;
use auth_server::grants::checkpoint::{Checkpoint, Checkpoints};
use auth_server::keys::KeyRing;
use auth_server::model::GrantType;
use auth_server::sealed::SystemSecrets;
use auth_server::store::{self, Store};
use secrecy::{ExposeSecret, SecretString};

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
    /// The admin operations, opened on the database as an admin command opens it (with the
    /// server's `AUTH_SECRETS`, Redis and access-token lifetime).
    pub admin: Admin,
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
        let admin_options = AdminOptions {
            database_url: config.database_url.clone(),
            secrets: config.secrets.clone(),
            keys_dir: config.keys_dir.clone(),
            client_secret_pepper: config.client_secret_pepper.clone(),
            redis: config.redis.clone(),
            access_token_ttl: config.access_token_ttl,
        };
        let app = Application::build(config).await.expect("server starts");
        let tokens = app.tokens();
        let base = format!("http://{}", app.local_addr());
        let issuer = app.issuer().to_owned();
        let keys = app.key_ring();
        let secrets = app.secrets();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let store = store::connect(&db.url).await.unwrap();
        let admin = Admin::open(&admin_options).await.unwrap();
        TestApp {
            base,
            issuer,
            store,
            keys,
            tokens,
            admin,
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
            self.admin.create_scope(name, "").await.unwrap();
        }
    }

    /// Creates those of `names` that do not exist yet.
    async fn ensure_scopes(&self, names: &[&str]) {
        let scopes: Vec<(&str, &str)> = names.iter().map(|name| (*name, "")).collect();
        self.admin.ensure_scopes(&scopes).await.unwrap();
    }

    /// Registers a client through the admin layer (creating missing scopes; no grant means
    /// client_credentials, password implies refresh_token) and returns its id and secret.
    pub async fn create_client(&self, scopes: &[&str], grants: &[GrantType]) -> (String, String) {
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
            registered
                .secret
                .as_ref()
                .expect("a confidential client has a secret")
                .expose_secret()
                .to_owned(),
        )
    }

    /// A client stored with exactly `grants`, as a database written before the admin rules
    /// holds one (a password client without refresh_token): registered through the admin
    /// layer, then its row written again with these grants. Returns its id and secret.
    pub async fn create_legacy_client(
        &self,
        scopes: &[&str],
        grants: &[GrantType],
    ) -> (String, String) {
        let (id, secret) = self.create_client(scopes, grants).await;
        let mut client = self.store.find_client(&id).await.unwrap().unwrap();
        client.grant_types = grants.iter().copied().collect();
        assert!(self.store.delete_client(&id).await.unwrap());
        self.store.create_client(&client).await.unwrap();
        (id, secret)
    }

    /// Registers a user through the admin layer (creating missing scopes) and returns their id.
    pub async fn create_user(&self, email: &str, password: &str, permissions: &[&str]) -> String {
        self.ensure_scopes(permissions).await;
        let new = NewUser::new(email, permissions.iter().copied()).unwrap();
        self.admin
            .register_user(new, SecretString::from(password.to_owned()))
            .await
            .unwrap()
            .id
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
