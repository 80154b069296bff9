//! The OAuth2 authorization server: issues JWT access tokens, publishes its keys as JWKS and
//! is administered through a CLI. [`Application::build`] binds a ready server; `main` is thin.
//!
//! What other crates use: [`Application`] and its [`config`], the [`admin`] layer (every
//! operator operation, with its rules) and the records of the [`model`]; [`cli`] for the
//! binary. The [`store`], the signing [`keys`], [`sealed`] (the `AUTH_SECRETS` format),
//! [`grants`] (the token service, its counters and checkpoints) and [`clock`] stay public for
//! the tests, which check what lies below the HTTP API (the store conformance suite, key
//! rotation, races) and forge tokens with a published key (test-support's `TestAuthServer`);
//! so do the sign-in [`pages`], which tests render. Everything else is private.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod grants;
mod http;
mod identifiers;
mod issuer;
pub mod keys;
pub mod model;
pub mod pages;
mod passwords;
mod revocation;
pub mod sealed;
mod secrets;
pub mod signin;
pub mod store;
pub mod telemetry;
mod throttle;
mod vault;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use config::ServerConfig;
use grants::TokenService;
use grants::client_auth::ClientAuthenticator;
use grants::refresh::RefreshTokens;
use issuer::TokenIssuer;
use keys::{KeyError, KeyRing};
use pages::{Pages, PagesError};
use passwords::{PasswordError, PasswordPool};
use revocation::{DenyList, DenyListError};
use sealed::SystemSecrets;
use secrets::SecretsError;
use signin::codes::AuthorizationCodes;
use store::{Store, StoreError};
use throttle::LoginThrottle;
use vault::{LegacySources, OpenOptions, VaultError};

use admin::Admin;

/// How often a running server re-reads its signing keys (to see CLI rotations), unless
/// [`ServerConfig::key_reload_interval`] says otherwise.
pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

pub use revocation::{
    REPUBLISH_INTERVAL, RETENTION_AFTER_EXP, Revocations, RevocationsInForce, VERIFIER_LEEWAY,
};

/// Shared state of the HTTP handlers; cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) tokens: Arc<TokenService>,
    /// The sign-in pages' service: sessions, consent, codes.
    pub(crate) signin: Arc<signin::SignIn>,
    /// The `iss` value and base URL of the metadata.
    pub(crate) issuer: Arc<str>,
    /// Renders `GET /metrics`; `None` answers 404.
    pub(crate) metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The sign-in pages and their stylesheet ([`pages`]).
    pub(crate) pages: Arc<Pages>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] KeyError),
    #[error("client secrets: {0}")]
    Secrets(#[from] SecretsError),
    #[error("password hashing: {0}")]
    Passwords(#[from] PasswordError),
    #[error("deny-list: {0}")]
    DenyList(#[from] DenyListError),
    #[error("{0}")]
    Vault(#[from] VaultError),
    #[error("pages: {0}")]
    Pages(#[from] PagesError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, ready-to-run auth server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    admin: Admin,
    secrets: SystemSecrets,
    key_reload_interval: Duration,
}

impl Application {
    /// Opens the database with `AUTH_SECRETS` by the rules every process follows (as
    /// [`Admin::open_sealed`] does: migrations, the one-time import of an earlier version's
    /// keys directory, the secret checked), loads (or first generates) the signing keys and
    /// binds the listener. The sign-in pages are loaded and checked first
    /// ([`Pages::load`]), so a broken operator template fails before anything is opened.
    pub async fn build(config: ServerConfig) -> Result<Application, StartError> {
        let pages = Arc::new(Pages::load(config.templates_dir.as_deref())?);
        let grace = config.access_token_ttl + VERIFIER_LEEWAY;
        let vault = vault::open(
            &config.database_url,
            OpenOptions {
                secrets: config.secrets.as_ref(),
                migrate: config.migrate,
                legacy: LegacySources {
                    keys_dir: &config.keys_dir,
                    pepper: config.client_secret_pepper.as_ref(),
                },
                retired_grace: grace,
            },
        )
        .await?;
        let (store, hasher) = (vault.store.clone(), vault.hasher.clone());
        let generated =
            keys::ensure_active_keys(store.as_ref(), &vault.secrets, config.access_token_alg)
                .await?;
        for key in generated {
            tracing::warn!(
                kid = key.kid,
                alg = key.alg.as_str(),
                "no active {} signing key found: generated one into the database",
                key.alg.as_str()
            );
        }
        let access_token_alg = config
            .access_token_alg
            .unwrap_or(keys::DEFAULT_ACCESS_TOKEN_ALG);
        let keys = Arc::new(
            KeyRing::load(
                store.clone(),
                vault.secrets.clone(),
                access_token_alg,
                grace,
                config.clock.clone(),
            )
            .await?,
        );
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.bind,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
        let issuer: Arc<str> = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{local}"))
            .into();
        let deny_list = match &config.redis {
            Some((url, prefix)) => {
                DenyList::with_redis(store.clone(), url, prefix, config.access_token_ttl).await?
            }
            None => DenyList::store_only(store.clone(), config.access_token_ttl),
        };
        let rules = token_guard::AccessTokenRules::new(
            &issuer,
            &config.audience,
            VERIFIER_LEEWAY,
            token_guard::DEFAULT_MAX_TOKEN_LEN,
        );
        let token_issuer = TokenIssuer::new(
            keys.clone(),
            issuer.to_string(),
            config.audience.clone(),
            config.access_token_ttl,
            config.token_clock.clone(),
        );
        let tokens = Arc::new(TokenService {
            clients: ClientAuthenticator::new(store.clone(), hasher.clone(), config.clock.clone()),
            issuer: token_issuer,
            store: store.clone(),
            keys: keys.clone(),
            passwords: Arc::new(
                PasswordPool::new(config.password_hash_threads, config.password_hash_queue).await?,
            ),
            throttle: LoginThrottle::new(
                store.clone(),
                config.throttle.clone(),
                config.clock.clone(),
            ),
            deny_list,
            codes: AuthorizationCodes::new(store.clone(), hasher.clone(), config.clock.clone()),
            refresh: RefreshTokens::new(
                store.clone(),
                hasher.clone(),
                config.refresh_token_ttl,
                config.refresh_grace,
                config.clock.clone(),
            ),
            rules,
            checkpoints: config.checkpoints.clone(),
        });
        let signin = Arc::new(signin::SignIn::new(
            tokens.clone(),
            hasher.clone(),
            issuer.clone(),
            config.clock.clone(),
            config.session_idle_ttl,
            config.session_ttl,
        ));
        let admin = Admin::of_server(
            store.clone(),
            vault.secrets.clone(),
            hasher,
            tokens.passwords.clone(),
            tokens.deny_list.clone(),
            config.access_token_ttl,
        );
        Ok(Application {
            listener,
            state: AppState {
                store,
                keys,
                tokens,
                signin,
                issuer,
                metrics: config.metrics,
                pages,
            },
            admin,
            secrets: vault.secrets,
            key_reload_interval: config.key_reload_interval,
        })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The token service (tests read its counters).
    pub fn tokens(&self) -> Arc<TokenService> {
        self.state.tokens.clone()
    }

    /// The admin operations on this server's database ([`admin`]): its pepper, its password
    /// hashing pool and its deny-list, so what they revoke reaches this server at once.
    pub fn admin(&self) -> Admin {
        self.admin.clone()
    }

    /// The revocations in force, as resource servers in the same process apply them (for one
    /// that cannot read the Redis mirror).
    pub fn revocations(&self) -> Revocations {
        self.state.tokens.deny_list.in_force_reader()
    }

    /// The secrets that open the database (tests read what they seal).
    pub fn secrets(&self) -> SystemSecrets {
        self.secrets.clone()
    }

    /// The key ring the server signs with (tests reload it after rotating keys).
    pub fn key_ring(&self) -> Arc<KeyRing> {
        self.state.keys.clone()
    }

    /// The issuer URL tokens carry.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let keys = self.state.keys.clone();
        let tokens = self.state.tokens.clone();
        let reload_every = self.key_reload_interval;
        let reloader = tokio::spawn(async move {
            let mut tick = tokio::time::interval(reload_every);
            tick.tick().await;
            let mut republish = tokio::time::interval(revocation::REPUBLISH_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(err) = keys.reload().await {
                            tracing::warn!(error = %err, "reloading signing keys failed; keeping the current set");
                        }
                        // Ended browser sessions, and codes past their replay window.
                        let now = time::OffsetDateTime::now_utc().unix_timestamp();
                        let codes_before = now - signin::codes::CODE_REPLAY_WINDOW.as_secs() as i64;
                        if let Err(err) = tokens.store.purge_sign_in(now, codes_before).await {
                            tracing::warn!(error = %err, "purging ended sessions and old codes failed; retrying");
                        }
                    }
                    _ = republish.tick() => {
                        let now = time::OffsetDateTime::now_utc().unix_timestamp();
                        if let Err(err) = tokens.deny_list.republish(now).await {
                            tracing::warn!(error = %err, "copying revocations to Redis failed; retrying");
                        }
                    }
                    _ = stop_rx.changed() => break,
                }
            }
        });
        tracing::info!(addr = %self.local_addr(), issuer = %self.state.issuer, "auth-server listening");
        let app = http::router(self.state);
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_tx.send(true);
        let _ = reloader.await;
        result
    }
}

/// The PostgreSQL migrations the server applies, for tools that must know what they create
/// (the stack's `--reset` drops exactly the tables they create).
pub fn postgres_migrations() -> sqlx::migrate::Migrator {
    store::PostgresStore::migrator()
}

/// The services' one stop signal (SIGINT or SIGTERM), see [`plumbing::shutdown_signal`].
pub use plumbing::shutdown_signal;
