//! `stack`: the whole platform in one process for a newcomer's machine — `cargo run --release`.
//!
//! Starts the auth server on SQLite under `./data/` with a signing key generated into `./keys/`,
//! registers the product's scopes, a demo client and a demo user on first start, writes their
//! credentials to `./data/demo-credentials.json` (mode 0600) and prints ready-to-run curl lines.
//! Restarts reuse everything; `--reset` starts fresh.

mod demo;
mod sample;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use auth_server::config::{LogFormat, ServerConfig};
use auth_server::secrets::SecretHasher;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "stack",
    about = "The whole transcription platform in one process"
)]
struct Args {
    /// Delete ./data and the generated keys first, then start fresh.
    #[arg(long)]
    reset: bool,
    /// Address of the auth server.
    #[arg(long, env = "AUTH_BIND", default_value = "127.0.0.1:8080")]
    auth_bind: SocketAddr,
    /// Directory of the SQLite files, the outbox and the demo credentials.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Signing keys and the client-secret pepper.
    #[arg(long, env = "KEYS_DIR", default_value = "keys")]
    keys_dir: PathBuf,
    /// `sqlite:…` or `postgres://…`; default a SQLite file in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    auth_server::init_tracing(LogFormat::Pretty);
    if args.reset {
        reset(&args)?;
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", args.data_dir.join("auth-server.db").display()));

    let config = ServerConfig::new(args.auth_bind, &database_url, args.keys_dir.clone());
    let auth = auth_server::Application::build(config)
        .await
        .context("starting the auth server")?;
    let auth_url = format!("http://{}", auth.local_addr());
    let store = auth_server::store::connect(&database_url).await?;
    let hasher = SecretHasher::from_config(None, &args.keys_dir)?;
    let credentials_file = args.data_dir.join("demo-credentials.json");
    let (credentials, created) = demo::ensure(
        store.as_ref(),
        &hasher,
        &credentials_file,
        &auth_url,
        &auth_url,
    )
    .await?;
    print_welcome(&credentials, created, &credentials_file);

    auth.run_until(auth_server::shutdown_signal()).await?;
    Ok(())
}

/// Removes what a previous run created.
fn reset(args: &Args) -> anyhow::Result<()> {
    for dir in [&args.data_dir, &args.keys_dir] {
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    // Keep the committed keys/README.md and keys/.gitignore.
                    let name = entry.file_name();
                    if name == "README.md" || name == ".gitignore" {
                        continue;
                    }
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed.with_context(|| format!("removing {}", path.display()))?;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("reading {}", dir.display())),
        }
    }
    Ok(())
}

fn print_welcome(credentials: &demo::DemoCredentials, created: bool, file: &std::path::Path) {
    let c = credentials;
    if created {
        println!(
            "\nFirst start: created a demo client and user; credentials saved to {} (0600).",
            file.display()
        );
    } else {
        println!(
            "\nReusing the demo client and user from {}.",
            file.display()
        );
    }
    println!(
        "\n  auth server   {auth}\n  client_id     {id}\n  client_secret {secret}\n  user          {email} / {password}\n",
        auth = c.auth_url,
        id = c.client_id,
        secret = c.client_secret,
        email = c.user_email,
        password = c.user_password,
    );
    println!("Get a token:");
    println!(
        "  curl -s -u '{}:{}' -d grant_type=client_credentials {}/oauth/token\n",
        c.client_id, c.client_secret, c.auth_url
    );
    let _ = sample::sample_wav;
}
