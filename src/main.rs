//! `stack`: the whole platform in one process. For now this is the auth server on SQLite under
//! `./data/`, with a signing key generated into `./keys/` on first start.

use std::net::SocketAddr;
use std::path::PathBuf;

use auth_server::config::{LogFormat, ServerConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    auth_server::init_tracing(LogFormat::Pretty);
    let bind: SocketAddr = std::env::var("BIND")
        .unwrap_or_else(|_| "127.0.0.1:8080".to_owned())
        .parse()?;
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite:data/auth-server.db".to_owned());
    let keys_dir = PathBuf::from(std::env::var("KEYS_DIR").unwrap_or_else(|_| "keys".to_owned()));
    let config = ServerConfig::new(bind, &database_url, keys_dir);
    let app = auth_server::Application::build(config).await?;
    println!("auth-server ready on http://{}", app.local_addr());
    println!("register a client and get a token: see the quick start in README.md");
    app.run_until(auth_server::shutdown_signal()).await?;
    Ok(())
}
