//! Flags with environment fallbacks (README, transcription-api "Configuration"), validated once
//! into [`ApiConfig`] and the [`Services`](crate::Services) the API runs on. Every problem is one
//! line ([`ConfigError`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use job_queue::{QueueConfig, SigningKey};
use plumbing::cli::{LogFormat, secret};
use secrecy::{ExposeSecret, SecretString};
use token_guard::{
    GuardConfig, RedisRevocationConfig, RedisRevocationList, RevocationList, StaticRevocationList,
};

use crate::Services;
use crate::submissions::OutboxConfig;

/// Default database: a SQLite file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:data/transcription-api.db";
/// Default embedded queue when `REDIS_URL` is unset (shared with the worker).
pub const DEFAULT_QUEUE_DATABASE_URL: &str = "sqlite:data/queue.db";

/// `transcription-api`: the transcription gateway.
#[derive(Debug, Parser)]
#[command(name = "transcription-api", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (applies pending migrations first unless --no-migrate).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate,
}

/// Flags every command shares.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// sqlite:… or postgres://… (the password never appears in messages).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true, hide_env_values = true)]
    pub database_url: String,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
}

/// Flags of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8081")]
    pub bind: SocketAddr,
    /// The auth server's issuer URL (`iss` of the tokens).
    #[arg(long, env = "AUTH_ISSUER", default_value = "http://127.0.0.1:8080")]
    pub issuer: String,
    /// Where the auth server publishes its keys (default: {AUTH_ISSUER}/.well-known/jwks.json).
    #[arg(long, env = "AUTH_JWKS_URL", hide_env_values = true)]
    pub jwks_url: Option<String>,
    /// This service's name in the tokens' `aud`.
    #[arg(long, env = "TOKEN_AUDIENCE", default_value = "transcription-api")]
    pub audience: String,
    /// Redis URL (queue and revoked-token list); without it the embedded SQLite queue is used
    /// and revocations are not seen.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_parser = secret)]
    pub redis_url: Option<SecretString>,
    /// Embedded queue database when REDIS_URL is unset.
    #[arg(long, env = "QUEUE_DATABASE_URL", hide_env_values = true, default_value = DEFAULT_QUEUE_DATABASE_URL)]
    pub queue_db: String,
    /// Redis key prefix of this deployment.
    #[arg(long, env = "QUEUE_PREFIX", default_value = "transcribe")]
    pub queue_prefix: String,
    /// HMAC key shared with the workers (at least 32 bytes).
    #[arg(long, env = "JOB_SIGNING_KEY", hide_env_values = true, value_parser = secret)]
    pub job_signing_key: Option<SecretString>,
    /// How often the outbox relay re-queues jobs whose enqueue was not confirmed, in seconds.
    #[arg(long, env = "OUTBOX_RELAY_INTERVAL", default_value_t = 5)]
    pub outbox_relay_interval: u64,
    /// Seconds a record may stay `queued` since it was handed to the queue before the relay
    /// hands it over again (a no-op while the queue holds its job; repairs a queue that lost
    /// its data).
    #[arg(long, env = "REQUEUE_STALE_AFTER", default_value_t = 600)]
    pub requeue_stale_after: u64,
    /// Do not apply pending migrations at start.
    #[arg(long)]
    pub no_migrate: bool,
}

/// Bad configuration, one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot open the job queue: {0}")]
    Queue(#[from] job_queue::QueueError),
    #[error("cannot read the revoked-token list from Redis: {0}")]
    Revocations(#[from] token_guard::RevocationError),
}

/// Everything [`Application::build`](crate::Application::build) needs besides its services.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub bind: SocketAddr,
    pub database_url: String,
    pub migrate: bool,
    pub guard: GuardConfig,
    pub outbox: OutboxConfig,
}

impl ApiConfig {
    /// Defaults for a server on `bind` trusting `issuer`'s tokens for `transcription-api`.
    pub fn new(bind: SocketAddr, database_url: impl Into<String>, issuer: &str) -> ApiConfig {
        ApiConfig {
            bind,
            database_url: database_url.into(),
            migrate: true,
            guard: GuardConfig::new(issuer, "transcription-api"),
            outbox: OutboxConfig::default(),
        }
    }
}

/// The job signing key, checked.
pub fn signing_key(key: Option<&SecretString>) -> Result<SigningKey, ConfigError> {
    let key = key.ok_or_else(|| {
        ConfigError::Invalid("JOB_SIGNING_KEY is required (at least 32 bytes)".into())
    })?;
    SigningKey::new(key.expose_secret().as_bytes())
        .map_err(|e| ConfigError::Invalid(format!("JOB_SIGNING_KEY: {e}")))
}

impl ServeArgs {
    /// Validates the flags into the server's configuration.
    pub fn config(&self, common: &CommonArgs) -> Result<ApiConfig, ConfigError> {
        let issuer = self.issuer.trim_end_matches('/');
        if !(issuer.starts_with("http://") || issuer.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "AUTH_ISSUER must be an http(s) URL, got `{}`",
                self.issuer
            )));
        }
        if self.outbox_relay_interval == 0 {
            return Err(ConfigError::Invalid(
                "OUTBOX_RELAY_INTERVAL must be at least 1 second".into(),
            ));
        }
        if self.requeue_stale_after == 0 {
            return Err(ConfigError::Invalid(
                "REQUEUE_STALE_AFTER must be at least 1 second".into(),
            ));
        }
        let mut guard = GuardConfig::new(issuer, self.audience.trim());
        if let Some(url) = &self.jwks_url {
            guard = guard.with_jwks_url(url.clone());
        }
        Ok(ApiConfig {
            bind: self.bind,
            database_url: common.database_url.clone(),
            migrate: !self.no_migrate,
            guard,
            outbox: OutboxConfig {
                relay_interval: Duration::from_secs(self.outbox_relay_interval),
                requeue_stale_after: Duration::from_secs(self.requeue_stale_after),
                ..OutboxConfig::default()
            },
        })
    }

    /// Connects the queue and the revoked-token list this configuration names.
    pub async fn services(&self) -> Result<Services, ConfigError> {
        let key = signing_key(self.job_signing_key.as_ref())?;
        let redis_url = self.redis_url.as_ref().map(|url| url.expose_secret());
        let queue = job_queue::connect(
            redis_url,
            &self.queue_db,
            &self.queue_prefix,
            key,
            QueueConfig::default(),
        )
        .await?;
        let revocations: Arc<dyn RevocationList> = match redis_url {
            Some(url) => Arc::new(
                RedisRevocationList::connect(
                    RedisRevocationConfig::new(url).with_prefix(self.queue_prefix.clone()),
                )
                .await?,
            ),
            None => {
                tracing::warn!(
                    "REDIS_URL is unset: revoked access tokens stay valid here until they expire"
                );
                Arc::new(StaticRevocationList::new())
            }
        };
        Ok(Services {
            queue,
            revocations,
            metrics: crate::prometheus(),
        })
    }
}
