//! [`TestAuthServer`]: a real auth server for the tests of the crates around it (feature
//! `auth-server`), started in-process on 127.0.0.1:0 with a fresh SQLite database (removed on
//! drop), plus helpers to register scopes, clients and users (through the server's
//! [`Admin`], so the admin rules apply) and to obtain tokens over HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use auth_server::Application;
use auth_server::admin::{Admin, NewClient, NewUser};
use auth_server::config::{ServerConfig, SystemSecrets};
use auth_server::keys::{self, KeyRing};
use auth_server::model::GrantType;
use auth_server::store::{self, Store};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use uuid::Uuid;

/// A running auth server; stops when dropped.
pub struct TestAuthServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The `iss` of its tokens.
    pub issuer: String,
    /// Its store (the same database), to read or change what the server sees.
    pub store: Arc<dyn Store>,
    /// Its signing keys.
    pub keys: Arc<KeyRing>,
    /// The admin operations of the running server (register, revoke, generate and rotate
    /// keys), with its pepper, hashing pool and deny-list.
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
        let database_url = config.database_url.clone();
        let app = Application::build(config)
            .await
            .expect("the test auth server starts");
        let base = format!("http://{}", app.local_addr());
        let issuer = app.issuer().to_owned();
        let keys = app.key_ring();
        let admin = app.admin();
        let secrets = app.secrets();
        let store = store::connect(&database_url)
            .await
            .expect("the test auth server's database opens");
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

    /// `<base>/.well-known/jwks.json`.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base)
    }

    /// Creates the scopes that do not exist yet.
    pub async fn ensure_scopes(&self, scopes: &[&str]) {
        let scopes: Vec<(&str, &str)> = scopes.iter().map(|name| (*name, "")).collect();
        self.admin
            .ensure_scopes(&scopes)
            .await
            .expect("the scopes are created");
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
            .expect("the client is registered");
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

    /// Registers a client_credentials client allowed `scopes`.
    pub async fn client(&self, scopes: &[&str]) -> (String, String) {
        self.client_with(scopes, &[GrantType::ClientCredentials])
            .await
    }

    /// Registers a user with `permissions` (creating missing scopes); returns the user id.
    pub async fn user(&self, email: &str, password: &str, permissions: &[&str]) -> String {
        self.ensure_scopes(permissions).await;
        let new = NewUser::new(email, permissions.iter().copied()).expect("a valid e-mail");
        self.admin
            .register_user(new, SecretString::from(password.to_owned()))
            .await
            .expect("the user is registered")
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
