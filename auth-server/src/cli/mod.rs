//! The `auth-server` command line: `serve`, `migrate` and the admin commands. Every admin
//! command prints text, or JSON with `--json`; failures are one line on stderr and exit 1.

mod clients;
mod keys;
mod scopes;
mod secrets;
mod tokens;
mod users;

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::config::{CommonArgs, ConfigError, ServeArgs, ServerConfig, parse_duration};
use crate::keys::KeyError;
use crate::revocation::DenyList;
use crate::secrets::SecretsError;
use crate::store::{self, Store, StoreError};
use crate::vault::{self, LegacySources, OpenOptions, Vault, VaultError};
use crate::{Application, StartError};

#[derive(Debug, Parser)]
#[command(
    name = "auth-server",
    version,
    about = "OAuth2 authorization server and its admin CLI"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Apply pending database migrations (and import an earlier version's keys directory).
    Migrate,
    /// Manage client applications.
    #[command(subcommand)]
    Clients(clients::ClientsCommand),
    /// Manage end users.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Revoke tokens.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Manage scopes.
    #[command(subcommand)]
    Scopes(scopes::ScopesCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage what AUTH_SECRETS encrypts.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
}

/// Why a command failed; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Start(#[from] StartError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Keys(#[from] KeyError),
    #[error("{0}")]
    Secrets(#[from] SecretsError),
    #[error("{0}")]
    Vault(#[from] VaultError),
    #[error("{0}")]
    DenyList(#[from] crate::revocation::DenyListError),
    #[error("{0}")]
    Password(#[from] crate::passwords::PasswordError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let out = Output {
        json: cli.common.json,
    };
    match cli.command {
        Command::Serve(args) => {
            let mut config = ServerConfig::from_args(&cli.common, &args)?;
            config.metrics = crate::telemetry::install_prometheus();
            let app = Application::build(config).await?;
            app.run_until(crate::shutdown_signal()).await?;
            Ok(())
        }
        Command::Migrate => {
            open_vault(&cli.common).await?;
            out.print(&serde_json::json!({"migrated": true}), || {
                "migrations applied".to_owned()
            });
            Ok(())
        }
        Command::Clients(cmd) => clients::run(cmd, &cli.common, &out).await,
        Command::Scopes(cmd) => scopes::run(cmd, &cli.common, &out).await,
        Command::Users(cmd) => users::run(cmd, &cli.common, &out).await,
        Command::Tokens(cmd) => tokens::run(cmd, &cli.common, &out).await,
        Command::Keys(cmd) => keys::run(cmd, &cli.common, &out).await,
        Command::Secrets(cmd) => secrets::run(cmd, &cli.common, &out).await,
    }
}

/// Opens the store and applies migrations, so admin commands work on a fresh database. Given
/// `AUTH_SECRETS`, it is opened as [`open_vault`] does (the secret checked, an earlier
/// version's keys imported); commands that need no secret also run without one.
async fn connect(common: &CommonArgs) -> Result<Arc<dyn Store>, CliError> {
    if common.system_secrets()?.is_some() {
        return Ok(open_vault(common).await?.store);
    }
    let store = store::connect(&common.database_url).await?;
    store.migrate().await?;
    Ok(store)
}

/// The store opened with `AUTH_SECRETS` (required), for commands that need the pepper or the
/// private keys: the same rules as `serve` ([`vault::open`]).
async fn open_vault(common: &CommonArgs) -> Result<Vault, CliError> {
    let secrets = common.system_secrets()?;
    let options = OpenOptions {
        secrets: secrets.as_ref(),
        migrate: true,
        legacy: LegacySources {
            keys_dir: &common.keys_dir,
            pepper: common.client_secret_pepper.as_ref(),
        },
        retired_grace: vault::DEFAULT_RETIRED_GRACE,
    };
    Ok(vault::open(&common.database_url, options).await?)
}

/// The access-token lifetime the commands that revoke tokens need: a denied jti or a cutoff
/// is kept until every token it covers has expired.
#[derive(Debug, Args)]
pub struct AccessTokenTtl {
    /// Longest access-token lifetime in use, so a revocation outlives the tokens it covers.
    #[arg(long = "access-token-ttl", env = "ACCESS_TOKEN_TTL", default_value = "900", value_parser = parse_duration)]
    pub value: Duration,
}

/// The deny-list the admin commands write to: the store, and Redis when `REDIS_URL` is set.
async fn deny_list(
    common: &CommonArgs,
    store: &Arc<dyn Store>,
    ttl: &AccessTokenTtl,
) -> Result<DenyList, CliError> {
    Ok(match &common.redis_url {
        Some(url) => {
            DenyList::with_redis(store.clone(), url, &common.queue_prefix, ttl.value).await?
        }
        None => DenyList::store_only(store.clone(), ttl.value),
    })
}

/// Prints results as text or JSON.
pub struct Output {
    json: bool,
}

impl Output {
    fn print<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            println!("{}", text());
        }
    }
}

/// Splits a space- or comma-separated list argument.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split([' ', ',']).filter(|s| !s.is_empty())
}
