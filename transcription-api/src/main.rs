//! `transcription-api`: parse the command line, run it, report a failure as one line (exit
//! code 1; usage errors 2).

use std::process::ExitCode;

use plumbing::cli::{COMMAND_LOG_LEVEL, SERVICE_LOG_LEVEL};
use transcription_api::config::{Cli, Command};
use transcription_api::{Application, shutdown_signal, store};

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Migrate => {
            let store = store::connect(&cli.common.database_url).await?;
            store.migrate().await?;
            println!("migrations applied");
        }
        Command::Serve(args) => {
            let config = args.config(&cli.common)?;
            let services = args.services().await?;
            let app = Application::build(config, services).await?;
            app.run_until(shutdown_signal()).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = match plumbing::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let level = match cli.command {
        Command::Serve(_) => SERVICE_LOG_LEVEL,
        Command::Migrate => COMMAND_LOG_LEVEL,
    };
    plumbing::cli::init_logs(cli.common.log_format, level);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => plumbing::cli::fail(err.as_ref(), false),
    }
}
