//! `stack`: the whole platform in one process for a newcomer's machine — `cargo run --release`.
//!
//! Starts the auth server (:8080), transcription-api (:8081) and the worker's transcriber and
//! notifier on SQLite files under `./data/` and the embedded queue (PostgreSQL and Redis when
//! `DATABASE_URL` / `REDIS_URL` are set), registers a demo client and user on first start,
//! writes their credentials to `./data/demo-credentials.json` (mode 0600) and prints curl lines
//! that work as they are, and the demo web app's sign-in URL. Restarts reuse everything; `--reset` starts fresh; Ctrl-C stops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use plumbing::cli::{LogFormat, secret};
use secrecy::SecretString;
use stack::{SAMPLE_PATH, Stack, StackConfig};

#[derive(Debug, Parser)]
#[command(
    name = "stack",
    about = "The whole transcription platform in one process"
)]
struct Args {
    /// Delete what earlier runs created first, then start fresh: the stack's own files in the
    /// data and keys directories (refused if they hold anything else, unless --yes), its tables
    /// on PostgreSQL and its keys under QUEUE_PREFIX on Redis.
    #[arg(long)]
    reset: bool,
    /// With --reset: delete the stack's own files even beside files it did not create (those
    /// are kept).
    #[arg(long, requires = "reset")]
    yes: bool,
    /// Address of the auth server.
    #[arg(long, env = "AUTH_BIND", default_value = "127.0.0.1:8080")]
    auth_bind: SocketAddr,
    /// Address of transcription-api.
    #[arg(long, env = "API_BIND", default_value = "127.0.0.1:8081")]
    api_bind: SocketAddr,
    /// SQLite files, the mail outbox and the demo credentials.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Import source only: an earlier version's signing keys and client-secret pepper, moved
    /// into the auth database once.
    #[arg(long, env = "KEYS_DIR", default_value = "keys")]
    keys_dir: PathBuf,
    /// Secrets that encrypt the signing keys and the pepper in the auth database
    /// (comma-separated, each ≥ 32 bytes; default: generated into DATA_DIR/auth-secrets for a
    /// fresh database).
    #[arg(long, env = "AUTH_SECRETS", hide_env_values = true, value_parser = secret)]
    auth_secrets: Option<SecretString>,
    /// postgres://… for both services' tables (default: SQLite files in the data directory).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Redis for the queue and the revoked-token list (default: the embedded SQLite queue).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_parser = secret)]
    redis_url: Option<SecretString>,
    /// Prefix of this deployment's Redis keys.
    #[arg(long, env = "QUEUE_PREFIX", default_value = "transcribe")]
    queue_prefix: String,
    /// HMAC key of the jobs (default: generated into the data directory once).
    #[arg(long, env = "JOB_SIGNING_KEY", hide_env_values = true, value_parser = secret)]
    job_signing_key: Option<SecretString>,
    /// Mail server, e.g. smtp://localhost:1025 (default: .eml files in data/outbox/).
    #[arg(long, env = "SMTP_URL", hide_env_values = true, value_parser = secret)]
    smtp_url: Option<SecretString>,
    /// Sender of the result mails.
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "Transcriptions <transcriptions@localhost>"
    )]
    mail_from: String,
    /// Simulated transcription time in milliseconds.
    #[arg(long, env = "TRANSCRIBE_DELAY_MS", default_value_t = 2000)]
    transcribe_delay_ms: u64,
    /// Let the transcriber fetch audio from any loopback/private address (default: only the
    /// stack's own sample origin).
    #[arg(long, env = "ALLOW_PRIVATE_URLS", action = clap::ArgAction::Set, num_args = 0..=1,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    allow_private_urls: bool,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Args = match plumbing::cli::parse() {
        Ok(args) => args,
        Err(code) => return code,
    };
    plumbing::cli::init_logs(args.log_format, plumbing::cli::SERVICE_LOG_LEVEL);
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => plumbing::cli::fail(err.as_ref(), false),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = StackConfig {
        auth_bind: args.auth_bind,
        api_bind: args.api_bind,
        database_url: args.database_url,
        auth_secrets: args.auth_secrets,
        redis_url: args.redis_url,
        queue_prefix: args.queue_prefix,
        job_signing_key: args.job_signing_key,
        smtp_url: args.smtp_url.clone(),
        mail_from: args.mail_from,
        transcribe_delay: Duration::from_millis(args.transcribe_delay_ms),
        allow_private_urls: args.allow_private_urls,
        ..StackConfig::new(args.data_dir, args.keys_dir)
    };
    if args.reset {
        let report = stack::reset::reset(&config, args.yes).await?;
        tracing::info!(
            files = report.files_removed,
            tables = report.tables_dropped,
            redis_keys = report.redis_keys_deleted,
            "reset: removed what earlier runs created"
        );
        if !report.kept.is_empty() {
            tracing::warn!(kept = ?report.kept, "reset: kept what the stack did not create");
        }
    }
    let stack = Stack::start(config).await.context("starting the stack")?;
    // Before the welcome: whoever reads it may stop the stack at once.
    let stop = auth_server::shutdown_signal();
    print_welcome(&stack, args.smtp_url.is_some());
    stack.run_until(stop).await
}

fn print_welcome(stack: &Stack, smtp: bool) {
    let c = &stack.credentials;
    if stack.created {
        println!(
            "\nFirst start: created a demo client and user; credentials saved to {} (0600).",
            stack.credentials_file.display()
        );
    } else {
        println!(
            "\nReusing the demo client and user of {}.",
            stack.credentials_file.display()
        );
    }
    println!(
        "\n  auth server        {auth}\n  transcription-api  {api}\n  client_id          {id}\n  client_secret      {secret}\n  demo user          {email} / {password}\n",
        auth = stack.auth_url,
        api = stack.api_url,
        id = c.client_id,
        secret = c.client_secret,
        email = c.user_email,
        password = c.user_password,
    );
    println!(
        "Sign in as a person (authorization code + PKCE, OpenID Connect): open {} in a browser and log in as {} / {}.\n",
        stack.sign_in_url, c.user_email, c.user_password
    );
    println!("1. Get a token (client_credentials):");
    println!(
        "  TOKEN=$(curl -s -u '{}:{}' -d grant_type=client_credentials {}/oauth/token | sed -n 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/p')",
        c.client_id, c.client_secret, stack.auth_url
    );
    println!("   or log in as the demo user (password grant):");
    println!(
        "  TOKEN=$(curl -s -u '{}:{}' -d grant_type=password --data-urlencode 'username={}' --data-urlencode 'password={}' {}/oauth/token | sed -n 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/p')",
        c.client_id, c.client_secret, c.user_email, c.user_password, stack.auth_url
    );
    println!("2. Submit the sample recording for transcription:");
    println!(
        "  ID=$(curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{{\"email\":\"{}\",\"audio_url\":\"{}{}\"}}' {}/transcriptions | sed -n 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/p'); echo $ID",
        c.user_email, stack.api_url, SAMPLE_PATH, stack.api_url
    );
    println!("3. Read its status (queued → processing → completed, about 2 s):");
    println!(
        "  curl -s -H \"Authorization: Bearer $TOKEN\" {}/transcriptions/$ID",
        stack.api_url
    );
    if smtp {
        println!(
            "4. The result e-mail goes to {} through SMTP_URL.\n",
            c.user_email
        );
    } else {
        println!(
            "4. The result e-mail lands in {}/ as an .eml file:\n  ls {}/\n",
            stack.outbox_dir.display(),
            stack.outbox_dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Args;

    /// `clap`'s own consistency checks, and the README's table is exactly the stack's flags
    /// with their env fallbacks.
    #[test]
    fn the_cli_is_well_formed_and_matches_the_readme() {
        Args::command().debug_assert();
        let mut command = Args::command();
        command.build();
        test_support::readme::assert_flag_table_matches(
            &["## Walkthrough", "### The stack's settings"],
            &[&command],
        );
    }

    /// Every flag table of the README is one that a binary's test checks against its `--help`
    /// (this one, and `the_cli_is_well_formed_and_matches_the_readme` of auth-server,
    /// transcription-api and worker): a new table needs a check before it can go in.
    #[test]
    fn every_flag_table_of_the_readme_is_checked() {
        let checked: Vec<Vec<String>> = [
            &["## Walkthrough", "### The stack's settings"][..],
            &["## auth-server", "### Configuration"],
            &["## transcription-api", "### Configuration"],
            &["## worker"],
        ]
        .iter()
        .map(|chain| chain.iter().map(|h| (*h).to_owned()).collect())
        .collect();
        assert_eq!(test_support::readme::flag_tables(), checked);
    }
}
