//! `auth-server`: parse the command line, run it, report a failure as one line (exit code 1;
//! usage errors 2).

use std::process::ExitCode;

use auth_server::cli::{Cli, Command};
use plumbing::cli::{COMMAND_LOG_LEVEL, SERVICE_LOG_LEVEL};

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = match plumbing::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let level = match cli.command {
        Command::Serve(_) => SERVICE_LOG_LEVEL,
        _ => COMMAND_LOG_LEVEL,
    };
    plumbing::cli::init_logs(cli.common.log_format, level);
    let json = cli.common.json;
    match auth_server::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => plumbing::cli::fail(&err, json),
    }
}
