//! `worker`: parse the command line, run it, report a failure as one line (exit code 1; usage
//! errors 2).

use std::process::ExitCode;

use plumbing::cli::{COMMAND_LOG_LEVEL, SERVICE_LOG_LEVEL};
use worker::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = match plumbing::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let level = match cli.command {
        Command::Transcriber(_) | Command::Notifier(_) => SERVICE_LOG_LEVEL,
        Command::Queue(_) => COMMAND_LOG_LEVEL,
    };
    plumbing::cli::init_logs(cli.common.log_format, level);
    let json = cli.common.json;
    match worker::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => plumbing::cli::fail(&err, json),
    }
}
