//! [`TestAuthServer`]: a real auth server for the tests of the crates around it (feature
//! `auth-server`), started in-process on 127.0.0.1:0 with a fresh SQLite database (removed on
//! drop), plus helpers to register scopes, clients and users and to obtain tokens over HTTP.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use auth_server::Application;
use auth_server::config::ServerConfig;
use auth_server::keys::{self, KeyRing};
use auth_server::passwords::hash_password;
use auth_server::sealed::SystemSecrets;
use auth_server::secrets::{SecretHasher, generate_client_secret};
use auth_server::store::{Client, GrantType, Scope, Store, User};
use secrecy::ExposeSecret;
use serde_json::Value;
use time::OffsetDateTime;
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
    /// The secrets its database is sealed with (to generate or import keys beside it).
    pub secrets: SystemSecrets,
    /// Holds `auth.db`.
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
        let secrets = app.secrets();
        let hasher = app.secret_hasher();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        TestAuthServer {
            base,
            issuer,
            store,
            keys,
            secrets,
            dir,
            hasher,
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
