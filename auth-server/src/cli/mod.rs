//! The `auth-server` command line: `serve`, `migrate` and the admin commands. Every admin
//! command prints text, or JSON with `--json`; failures are one line on stderr and exit 1.

mod clients;
mod consents;
mod keys;
mod scopes;
mod secrets;
mod tokens;
mod users;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::admin::{Admin, AdminError, AdminOptions};
use crate::config::{CommonArgs, ServeArgs, ServerConfig, ServerConfigError, parse_duration};
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
    /// Withdraw what users allowed clients.
    #[command(subcommand)]
    Consents(consents::ConsentsCommand),
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
    Config(#[from] ServerConfigError),
    #[error("{0}")]
    Start(#[from] StartError),
    #[error("{0}")]
    Admin(#[from] AdminError),
    /// Input the command line itself refuses (a flag, a password prompt).
    #[error("{0}")]
    Invalid(String),
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
            open_sealed_admin(&cli.common).await?;
            out.print(&serde_json::json!({"migrated": true}), || {
                "migrations applied".to_owned()
            });
            Ok(())
        }
        Command::Clients(cmd) => clients::run(cmd, &cli.common, &out).await,
        Command::Scopes(cmd) => scopes::run(cmd, &cli.common, &out).await,
        Command::Users(cmd) => users::run(cmd, &cli.common, &out).await,
        Command::Consents(cmd) => consents::run(cmd, &cli.common, &out).await,
        Command::Tokens(cmd) => tokens::run(cmd, &cli.common, &out).await,
        Command::Keys(cmd) => keys::run(cmd, &cli.common, &out).await,
        Command::Secrets(cmd) => secrets::run(cmd, &cli.common, &out).await,
    }
}

/// The admin operations on the database the common flags name; `access_token_ttl` is the
/// command's (how long its revocations are kept).
async fn open_admin(common: &CommonArgs, access_token_ttl: Duration) -> Result<Admin, CliError> {
    Ok(Admin::open(&admin_options(common, access_token_ttl)?).await?)
}

/// [`open_admin`] for commands that need the pepper or the private keys: without
/// `AUTH_SECRETS` they fail before anything is opened, as `serve` does.
async fn open_sealed_admin(common: &CommonArgs) -> Result<Admin, CliError> {
    Ok(Admin::open_sealed(&admin_options(common, DEFAULT_ACCESS_TOKEN_TTL)?).await?)
}

fn admin_options(
    common: &CommonArgs,
    access_token_ttl: Duration,
) -> Result<AdminOptions, CliError> {
    Ok(AdminOptions {
        database_url: common.database_url.clone(),
        secrets: common.system_secrets()?,
        keys_dir: common.keys_dir.clone(),
        client_secret_pepper: common.client_secret_pepper.clone(),
        redis: common
            .redis_url
            .clone()
            .map(|url| (url, common.queue_prefix.clone())),
        access_token_ttl,
    })
}

/// The `--access-token-ttl` default, for commands that revoke nothing.
const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(900);

/// The access-token lifetime the commands that revoke tokens need: a denied jti or a cutoff
/// is kept until every token it covers has expired.
#[derive(Debug, Args)]
pub struct AccessTokenTtl {
    /// Longest access-token lifetime in use, so a revocation outlives the tokens it covers.
    #[arg(long = "access-token-ttl", env = "ACCESS_TOKEN_TTL", default_value = "900", value_parser = parse_duration)]
    pub value: Duration,
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
