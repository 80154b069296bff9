//! `transcription-api`: parse the command line, run it, map failure to exit code 1.

use clap::Parser;
use transcription_api::config::{Cli, Command, LogFormat};
use transcription_api::{Application, shutdown_signal, store};

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

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
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.common.log_format);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
