//! `worker`: parse the command line, run it, map failure to exit code 1.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = worker::cli::Cli::parse();
    worker::cli::init_tracing(cli.common.log_format);
    match worker::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
