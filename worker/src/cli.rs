//! The `worker` command line: `transcriber`, `notifier` and the operator commands
//! `queue stats|dead|requeue ID|purge-dead`. Queue commands print text, or JSON with `--json`;
//! failures are one line on stderr (`{"error": …}` with `--json`) and exit code 1 (usage
//! errors: 2, from clap). Only `queue requeue` signs a job, so only it (and the workers) need
//! `JOB_SIGNING_KEY`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use contracts::jobs::{NotifyJob, TranscribeJob};
use job_queue::{DeadJob, Job, QueueError, ReliableQueue};
use serde::Serialize;

use crate::config::{ConfigError, NotifierArgs, QueueArgs, TranscriberArgs};
use crate::notifier::Notifier;
use crate::runner::{RunError, RunSummary};
use crate::telemetry::{self, MetricsServer, TelemetryError};
use crate::transcriber::Transcriber;

#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "Transcription platform workers: transcriber, notifier and queue operations"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: QueueArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume `transcribe` jobs: download, transcribe, report, enqueue `notify`.
    Transcriber(TranscriberArgs),
    /// Consume `notify` jobs: send the e-mail (or write it to the outbox).
    Notifier(NotifierArgs),
    /// Inspect and repair queues.
    #[command(subcommand)]
    Queue(QueueCommand),
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Job counts per state.
    Stats {
        /// Queue name (default: transcribe and notify).
        #[arg(long)]
        queue: Option<String>,
    },
    /// The dead list, most recent first.
    Dead {
        /// Queue name (default: transcribe and notify).
        #[arg(long)]
        queue: Option<String>,
    },
    /// Move a dead job back to its ready queue.
    Requeue {
        /// The dead job's id.
        id: String,
        /// Queue name (default: look in transcribe, then notify).
        #[arg(long)]
        queue: Option<String>,
    },
    /// Empty the dead list.
    PurgeDead {
        /// Queue name (default: transcribe and notify).
        #[arg(long)]
        queue: Option<String>,
    },
}

/// Why a command failed; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Run(#[from] RunError),
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Telemetry(#[from] TelemetryError),
    #[error("cannot listen on {addr} (metrics endpoint): {source}")]
    MetricsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics endpoint: {0}")]
    MetricsEndpoint(#[from] std::io::Error),
}

/// Runs a parsed command line until it finishes (or, for the workers, until SIGINT/SIGTERM).
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Transcriber(args) => {
            let config = args.to_config()?;
            let queue = cli.common.connect().await?;
            let transcriber = Transcriber::new(config, queue.clone())?;
            with_metrics(
                args.run.metrics_bind,
                queue,
                transcriber.run(shutdown_signal()),
            )
            .await
        }
        Command::Notifier(args) => {
            let config = args.to_config()?;
            let queue = cli.common.connect().await?;
            let notifier = Notifier::new(config, queue.clone())?;
            with_metrics(
                args.run.metrics_bind,
                queue,
                notifier.run(shutdown_signal()),
            )
            .await
        }
        Command::Queue(command) => queue_command(&cli.common, command).await,
    }
}

/// Runs a worker loop, serving `/metrics` and `/healthz` on `bind` (when set) until the loop
/// has stopped, so the last counts stay scrapeable through the shutdown grace period.
async fn with_metrics(
    bind: Option<SocketAddr>,
    queue: Arc<dyn ReliableQueue>,
    worker: impl Future<Output = Result<RunSummary, RunError>>,
) -> Result<(), CliError> {
    let Some(bind) = bind else {
        worker.await?;
        return Ok(());
    };
    let handle = telemetry::install_prometheus()?;
    let server = MetricsServer::bind(bind, handle, queue)
        .await
        .map_err(|source| CliError::MetricsBind { addr: bind, source })?;
    let addr = server.local_addr()?;
    tracing::info!(%addr, "metrics endpoint listening");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let outcome = worker.await;
    let _ = stop.send(());
    match serving.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "metrics endpoint failed"),
        Err(err) => tracing::warn!(error = %err, "metrics endpoint task failed"),
    }
    outcome?;
    Ok(())
}

fn queues(queue: Option<String>) -> Vec<String> {
    match queue {
        Some(queue) => vec![queue],
        None => vec![TranscribeJob::QUEUE.to_owned(), NotifyJob::QUEUE.to_owned()],
    }
}

fn print_json<T: Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// A dead job as the CLI prints it: the time it died in RFC 3339.
#[derive(Serialize)]
struct DeadJobView<'a> {
    id: &'a str,
    kind: Option<&'a str>,
    attempt: u32,
    reason: &'a str,
    died_at: String,
    verified: bool,
    job: &'a str,
}

impl<'a> From<&'a DeadJob> for DeadJobView<'a> {
    fn from(job: &'a DeadJob) -> Self {
        DeadJobView {
            id: &job.id,
            kind: job.kind.as_deref(),
            attempt: job.attempt,
            reason: &job.reason,
            died_at: plumbing::rfc3339_from_unix_ms(job.died_at),
            verified: job.verified,
            job: &job.job,
        }
    }
}

/// Runs a `queue …` command. Only `requeue` signs a job, so only it needs `JOB_SIGNING_KEY`.
async fn queue_command(args: &QueueArgs, command: QueueCommand) -> Result<(), CliError> {
    let json = args.json;
    match command {
        QueueCommand::Stats { queue: name } => {
            let queue = args.inspect().await?;
            let mut all = serde_json::Map::new();
            for name in queues(name) {
                let stats = queue.stats(&name).await?;
                if !json {
                    println!(
                        "{name}: ready {} processing {} delayed {} dead {}",
                        stats.ready, stats.processing, stats.delayed, stats.dead
                    );
                }
                all.insert(name, serde_json::to_value(stats).unwrap_or_default());
            }
            if json {
                print_json(&all);
            }
        }
        QueueCommand::Dead { queue: name } => {
            let queue = args.inspect().await?;
            let mut all = serde_json::Map::new();
            for name in queues(name) {
                let dead = queue.dead(&name).await?;
                let views: Vec<DeadJobView<'_>> = dead.iter().map(DeadJobView::from).collect();
                if !json {
                    println!("{name}: {} dead", dead.len());
                    for job in &views {
                        println!(
                            "  {}  kind={}  attempts={}  died_at={}  verified={}  reason: {}",
                            job.id,
                            job.kind.unwrap_or("?"),
                            job.attempt,
                            job.died_at,
                            job.verified,
                            job.reason
                        );
                    }
                }
                all.insert(name, serde_json::to_value(views).unwrap_or_default());
            }
            if json {
                print_json(&all);
            }
        }
        QueueCommand::Requeue { id, queue: name } => {
            let queue = args.connect().await?;
            let mut found = None;
            for name in queues(name) {
                if queue.requeue_dead(&name, &id).await? {
                    found = Some(name);
                    break;
                }
            }
            let Some(name) = found else {
                return Err(CliError::NotFound(format!("no dead job `{id}`")));
            };
            if json {
                print_json(&serde_json::json!({"requeued": id, "queue": name}));
            } else {
                println!("requeued {id} on {name}");
            }
        }
        QueueCommand::PurgeDead { queue: name } => {
            let queue = args.inspect().await?;
            let mut all = serde_json::Map::new();
            for name in queues(name) {
                let purged = queue.purge_dead(&name).await?;
                if !json {
                    println!("{name}: purged {purged} dead jobs");
                }
                all.insert(name, serde_json::json!({"purged": purged}));
            }
            if json {
                print_json(&all);
            }
        }
    }
    Ok(())
}

/// The services' one stop signal (SIGINT or SIGTERM), see [`plumbing::shutdown_signal`].
pub use plumbing::shutdown_signal;
