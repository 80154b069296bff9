//! `auth-server`: parse the command line, run it, map failure to exit code 1.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = auth_server::cli::Cli::parse();
    auth_server::init_tracing(cli.common.log_format);
    match auth_server::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
