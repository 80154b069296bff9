//! Command-line flags with environment fallbacks, validated once into the library's config
//! types. Every problem is one line of text (`ConfigError`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use contracts::jobs::{NotifyJob, TranscribeJob};
use contracts::scopes::TRANSCRIPTIONS_REPORT;
use job_queue::{Job, QueueConfig, QueueError, QueueInspector, ReliableQueue, SigningKey};
use plumbing::cli::{LogFormat, secret};
use secrecy::{ExposeSecret, SecretString};

use crate::api::ClientCredentials;
use crate::download::DownloadLimits;
use crate::engine::split_command_line;
use crate::notifier::{MailConfig, NotifierConfig, ReportConfig};
use crate::runner::{RunConfig, new_worker_id};
use crate::transcriber::{EngineConfig, TranscriberConfig};

/// Bad configuration, printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot open the queue: {0}")]
    Queue(#[from] QueueError),
}

/// Default `JOB_TIMEOUT_SECS` of the transcriber: the default download (120 s) and engine
/// (600 s) deadlines plus room for the reports.
const TRANSCRIBER_JOB_TIMEOUT: Duration = Duration::from_secs(900);
/// Default `JOB_TIMEOUT_SECS` of the notifier: one SMTP conversation with its timeouts.
const NOTIFIER_JOB_TIMEOUT: Duration = Duration::from_secs(120);

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// Flags every command shares: where the queues live.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// Redis URL; when unset the embedded SQLite queue (`--queue-db`) is used.
    #[arg(long, env = "REDIS_URL", global = true, hide_env_values = true, value_parser = secret)]
    pub redis_url: Option<SecretString>,
    /// Embedded queue database when REDIS_URL is unset.
    #[arg(
        long,
        env = "QUEUE_DATABASE_URL",
        hide_env_values = true,
        global = true,
        default_value = "sqlite:data/queue.db"
    )]
    pub queue_db: String,
    /// Redis key prefix of this deployment.
    #[arg(
        long,
        env = "QUEUE_PREFIX",
        global = true,
        default_value = "transcribe"
    )]
    pub queue_prefix: String,
    /// HMAC key shared by producers and workers (at least 32 bytes); `queue stats`, `queue
    /// dead` and `queue purge-dead` do not need it.
    #[arg(long, env = "JOB_SIGNING_KEY", global = true, hide_env_values = true, value_parser = secret)]
    pub job_signing_key: Option<SecretString>,
    /// Deliveries before a failing job goes to the dead list.
    #[arg(long, env = "QUEUE_MAX_ATTEMPTS", global = true, default_value_t = 5)]
    pub max_attempts: u32,
    /// Log format.
    #[arg(
        long,
        env = "LOG_FORMAT",
        global = true,
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

impl QueueArgs {
    /// Opens the configured queue backend (migrating the SQLite schema).
    pub async fn connect(&self) -> Result<Arc<dyn ReliableQueue>, ConfigError> {
        let key = self
            .job_signing_key
            .as_ref()
            .ok_or_else(|| invalid("JOB_SIGNING_KEY is required (at least 32 bytes)"))?;
        let key = SigningKey::new(key.expose_secret().as_bytes())
            .map_err(|e| invalid(format!("JOB_SIGNING_KEY: {e}")))?;
        let config = QueueConfig {
            max_attempts: self.max_attempts,
            ..QueueConfig::default()
        };
        let redis_url = self.redis_url.as_ref().map(|url| url.expose_secret());
        Ok(job_queue::connect(redis_url, &self.queue_db, &self.queue_prefix, key, config).await?)
    }

    /// Opens the configured queue backend for the operations that neither sign nor verify a
    /// job (counts, the dead list, purging it): `JOB_SIGNING_KEY` is not needed.
    pub async fn inspect(&self) -> Result<Arc<dyn QueueInspector>, ConfigError> {
        let redis_url = self.redis_url.as_ref().map(|url| url.expose_secret());
        Ok(job_queue::inspect(redis_url, &self.queue_db, &self.queue_prefix).await?)
    }
}

/// Flags of a worker loop.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Queue to consume (default: `transcribe` for the transcriber, `notify` for the notifier).
    #[arg(long)]
    pub queue: Option<String>,
    /// Jobs processed at once.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 1)]
    pub concurrency: usize,
    /// Heartbeat lifetime in seconds; jobs of a worker silent this long are handed out again.
    #[arg(long, env = "HEARTBEAT_TTL_SECS", default_value_t = 30)]
    pub heartbeat_ttl_secs: u64,
    /// On SIGTERM/SIGINT, how long in-flight jobs may finish before they are returned.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// Deadline of one whole job in seconds (default: 900 for the transcriber, 120 for the
    /// notifier); a job still running then is cancelled and retried with back-off.
    #[arg(long, env = "JOB_TIMEOUT_SECS")]
    pub job_timeout_secs: Option<u64>,
    /// Worker id (default: `<role>-<pid>-<random>`).
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,
    /// Serve Prometheus `GET /metrics` and `GET /healthz` on this address (e.g.
    /// `0.0.0.0:9100`; port 0 picks a free one). Off when unset.
    #[arg(long, env = "METRICS_BIND")]
    pub metrics_bind: Option<std::net::SocketAddr>,
}

impl RunArgs {
    fn to_config(
        &self,
        role: &str,
        default_queue: &str,
        default_job_timeout: Duration,
    ) -> Result<RunConfig, ConfigError> {
        if self.concurrency == 0 || self.concurrency > 1024 {
            return Err(invalid("WORKER_CONCURRENCY must be between 1 and 1024"));
        }
        if self.heartbeat_ttl_secs < 3 {
            return Err(invalid("HEARTBEAT_TTL_SECS must be at least 3"));
        }
        let mut config = RunConfig::new(role, self.queue.as_deref().unwrap_or(default_queue));
        config.concurrency = self.concurrency;
        config.heartbeat_ttl = Duration::from_secs(self.heartbeat_ttl_secs);
        config.shutdown_grace = Duration::from_secs(self.shutdown_grace_secs);
        config.job_timeout = match self.job_timeout_secs {
            Some(0) => return Err(invalid("JOB_TIMEOUT_SECS must be positive")),
            Some(secs) => Duration::from_secs(secs),
            None => default_job_timeout,
        };
        config.worker_id = self
            .worker_id
            .clone()
            .unwrap_or_else(|| new_worker_id(role));
        Ok(config)
    }
}

/// Transcription engines selectable on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    Simulated,
    Command,
}

/// How a worker reaches transcription-api: the transcriber reports results there (required),
/// the notifier notification states (optional).
#[derive(Debug, Clone, Args)]
pub struct ApiClientArgs {
    /// transcription-api base URL: where the transcriber reports results and the notifier
    /// reports each notification's state (`sent` / `failed`).
    #[arg(long, env = "TRANSCRIPTION_API_URL", hide_env_values = true)]
    pub transcription_api_url: Option<String>,
    /// Auth server base URL (the token endpoint is `<AUTH_URL>/oauth/token`).
    #[arg(long, env = "AUTH_URL", hide_env_values = true)]
    pub auth_url: Option<String>,
    /// The worker's OAuth2 client id.
    #[arg(long, env = "WORKER_CLIENT_ID")]
    pub worker_client_id: Option<String>,
    /// The worker's OAuth2 client secret. Prefer the environment or
    /// `--worker-client-secret-file`: a value on the command line is visible in `ps`.
    #[arg(long, env = "WORKER_CLIENT_SECRET", hide_env_values = true, value_parser = secret)]
    pub worker_client_secret: Option<SecretString>,
    /// File holding the worker's OAuth2 client secret (a trailing newline is trimmed).
    #[arg(
        long,
        env = "WORKER_CLIENT_SECRET_FILE",
        conflicts_with = "worker_client_secret"
    )]
    pub worker_client_secret_file: Option<PathBuf>,
    /// Scope requested for the reporting token.
    #[arg(
        long,
        env = "WORKER_TOKEN_SCOPE",
        default_value = TRANSCRIPTIONS_REPORT
    )]
    pub token_scope: String,
}

impl ApiClientArgs {
    /// The validated API URL and the worker's client credentials; `requirement` ends the
    /// message of a missing client id or secret (e.g. " with TRANSCRIPTION_API_URL").
    fn resolve(
        &self,
        api_url: Option<&str>,
        requirement: &str,
    ) -> Result<ReportConfig, ConfigError> {
        let api_url = http_url("TRANSCRIPTION_API_URL", api_url)?;
        let auth_url = http_url("AUTH_URL", self.auth_url.as_deref())?;
        let client_id = self
            .worker_client_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| invalid(format!("WORKER_CLIENT_ID is required{requirement}")))?;
        let client_secret = match &self.worker_client_secret_file {
            Some(path) => read_secret_file(path)?,
            None => self.worker_client_secret.clone(),
        }
        .filter(|s| !s.expose_secret().is_empty())
        .ok_or_else(|| invalid(format!("WORKER_CLIENT_SECRET is required{requirement}")))?;
        Ok(ReportConfig {
            api_url,
            credentials: ClientCredentials {
                token_url: format!("{auth_url}/oauth/token"),
                client_id,
                client_secret,
                scope: self.token_scope.clone(),
            },
        })
    }
}

/// The secret in `path`, without its trailing newline.
fn read_secret_file(path: &std::path::Path) -> Result<Option<SecretString>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("WORKER_CLIENT_SECRET_FILE {}: {e}", path.display())))?;
    Ok(Some(SecretString::from(
        text.trim_end_matches(['\r', '\n']).to_owned(),
    )))
}

/// Flags of `worker transcriber`.
#[derive(Debug, Clone, Args)]
pub struct TranscriberArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Queue the notify jobs go to.
    #[arg(long, env = "NOTIFY_QUEUE", default_value = NotifyJob::QUEUE)]
    pub notify_queue: String,
    #[command(flatten)]
    pub api: ApiClientArgs,
    /// Allow audio URLs on loopback/private/link-local addresses.
    #[arg(long, env = "ALLOW_PRIVATE_URLS", action = ArgAction::Set, num_args = 0..=1,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_private_urls: bool,
    /// Largest audio file accepted, in bytes.
    #[arg(long, env = "MAX_AUDIO_BYTES", default_value_t = 50 * 1024 * 1024)]
    pub max_audio_bytes: u64,
    /// Deadline of one call to the auth server or transcription-api, in seconds.
    #[arg(long, env = "API_TIMEOUT_SECS", default_value_t = 30)]
    pub api_timeout_secs: u64,
    /// Time for one whole download (headers and body), in seconds.
    #[arg(long, env = "DOWNLOAD_TIMEOUT_SECS", default_value_t = 120)]
    pub download_timeout_secs: u64,
    /// Transcription engine.
    #[arg(
        long,
        env = "TRANSCRIBE_ENGINE",
        value_enum,
        default_value = "simulated"
    )]
    pub engine: EngineKind,
    /// Simulated engine: delay per job in milliseconds.
    #[arg(long, env = "TRANSCRIBE_DELAY_MS", default_value_t = 2000)]
    pub transcribe_delay_ms: u64,
    /// Command engine: program and arguments (shell-like quoting); the audio path is appended.
    #[arg(long, env = "ENGINE_COMMAND")]
    pub engine_command: Option<String>,
    /// Command engine: seconds before the program is killed.
    #[arg(long, env = "ENGINE_TIMEOUT_SECS", default_value_t = 600)]
    pub engine_timeout_secs: u64,
    /// Where audio files are kept while they are transcribed (default: the system temp dir).
    #[arg(long, env = "SCRATCH_DIR")]
    pub scratch_dir: Option<PathBuf>,
}

impl TranscriberArgs {
    pub fn to_config(&self) -> Result<TranscriberConfig, ConfigError> {
        let ReportConfig {
            api_url,
            credentials,
        } = self
            .api
            .resolve(self.api.transcription_api_url.as_deref(), "")?;
        if self.max_audio_bytes == 0 {
            return Err(invalid("MAX_AUDIO_BYTES must be positive"));
        }
        if self.download_timeout_secs == 0
            || self.engine_timeout_secs == 0
            || self.api_timeout_secs == 0
        {
            return Err(invalid("timeouts must be positive"));
        }
        let engine = match self.engine {
            EngineKind::Simulated => EngineConfig::Simulated {
                delay: Duration::from_millis(self.transcribe_delay_ms),
            },
            EngineKind::Command => {
                let line = self
                    .engine_command
                    .as_deref()
                    .ok_or_else(|| invalid("--engine command needs ENGINE_COMMAND"))?;
                let mut words = split_command_line(line).map_err(invalid)?.into_iter();
                let program = words
                    .next()
                    .ok_or_else(|| invalid("ENGINE_COMMAND is empty"))?;
                EngineConfig::Command {
                    program,
                    args: words.collect(),
                    timeout: Duration::from_secs(self.engine_timeout_secs),
                }
            }
        };
        Ok(TranscriberConfig {
            run: self.run.to_config(
                "transcriber",
                TranscribeJob::QUEUE,
                TRANSCRIBER_JOB_TIMEOUT,
            )?,
            notify_queue: self.notify_queue.clone(),
            api_url,
            credentials,
            download: DownloadLimits {
                max_bytes: self.max_audio_bytes,
                timeout: Duration::from_secs(self.download_timeout_secs),
                allow_private: self.allow_private_urls,
                ..DownloadLimits::default()
            },
            engine,
            scratch_dir: self
                .scratch_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("transcription-worker")),
            api_timeout: Duration::from_secs(self.api_timeout_secs),
        })
    }
}

/// Checks an http(s) base URL and returns it without a trailing slash.
fn http_url(name: &str, value: Option<&str>) -> Result<String, ConfigError> {
    let value = value.ok_or_else(|| invalid(format!("{name} is required")))?;
    let url = reqwest::Url::parse(value).map_err(|e| invalid(format!("{name}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(format!("{name} must be an http(s) URL")));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// Flags of `worker notifier`.
#[derive(Debug, Clone, Args)]
pub struct NotifierArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// SMTP server: `smtp://[user:pass@]host[:port][?tls=none|opportunistic|required]` or
    /// `smtps://…`. Unset: write .eml files to --outbox-dir.
    #[arg(long, env = "SMTP_URL", hide_env_values = true, value_parser = secret)]
    pub smtp_url: Option<SecretString>,
    /// From address.
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "Transcription Service <noreply@localhost>"
    )]
    pub mail_from: String,
    /// Where .eml files go without SMTP_URL.
    #[arg(long, env = "OUTBOX_DIR", default_value = "data/outbox")]
    pub outbox_dir: PathBuf,
    /// SMTP mode: seconds one whole send (connect, greeting, every command) may take.
    #[arg(long, env = "SMTP_TIMEOUT_SECS", default_value_t = 60)]
    pub smtp_timeout_secs: u64,
    /// SMTP mode: PEM file of CA certificates the server's certificate may also chain to (a
    /// private CA); the system's roots stay trusted.
    #[arg(long, env = "SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub api: ApiClientArgs,
}

impl NotifierArgs {
    pub fn to_config(&self) -> Result<NotifierConfig, ConfigError> {
        if self.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid(format!(
                "MAIL_FROM `{}` is not an address",
                self.mail_from
            )));
        }
        if self.smtp_timeout_secs == 0 {
            return Err(invalid("SMTP_TIMEOUT_SECS must be positive"));
        }
        if self.smtp_ca_file.is_some() && self.smtp_url.is_none() {
            return Err(invalid("SMTP_CA_FILE needs SMTP_URL"));
        }
        let report = match &self.api.transcription_api_url {
            None => None,
            Some(api_url) => Some(
                self.api
                    .resolve(Some(api_url), " with TRANSCRIPTION_API_URL")?,
            ),
        };
        Ok(NotifierConfig {
            run: self
                .run
                .to_config("notifier", NotifyJob::QUEUE, NOTIFIER_JOB_TIMEOUT)?,
            mail: MailConfig {
                smtp_url: self.smtp_url.clone(),
                from: self.mail_from.clone(),
                outbox_dir: self.outbox_dir.clone(),
                smtp_timeout: Duration::from_secs(self.smtp_timeout_secs),
                smtp_ca_file: self.smtp_ca_file.clone(),
            },
            report,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn transcriber(extra: &[&str]) -> super::TranscriberArgs {
        let mut args = vec![
            "worker",
            "transcriber",
            "--transcription-api-url",
            "http://api.test/",
            "--auth-url",
            "http://auth.test",
            "--worker-client-id",
            "worker",
            "--worker-client-secret",
            "very-secret-value",
        ];
        args.extend_from_slice(extra);
        match Cli::try_parse_from(args).unwrap().command {
            Command::Transcriber(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transcriber_flags_become_a_config() {
        let config = transcriber(&["--allow-private-urls", "--concurrency", "3"])
            .to_config()
            .unwrap();
        assert!(config.download.allow_private);
        assert_eq!(config.run.concurrency, 3);
        assert_eq!(config.run.queue, "transcribe");
        assert_eq!(config.run.job_timeout, super::TRANSCRIBER_JOB_TIMEOUT);
        assert_eq!(config.api_timeout, std::time::Duration::from_secs(30));
        assert_eq!(config.api_url, "http://api.test");
        assert_eq!(config.credentials.token_url, "http://auth.test/oauth/token");
        assert!(!format!("{config:?}").contains("very-secret-value"));

        let strict = transcriber(&["--allow-private-urls=false"])
            .to_config()
            .unwrap();
        assert!(!strict.download.allow_private);
        assert!(
            transcriber(&[])
                .to_config()
                .is_ok_and(|c| !c.download.allow_private)
        );
    }

    /// `--worker-client-secret-file`: the secret without its trailing newline; never together
    /// with `--worker-client-secret`; an unreadable file is named.
    #[test]
    fn the_client_secret_can_come_from_a_file() {
        use secrecy::ExposeSecret;
        let dir = std::env::temp_dir().join(format!("worker-secret-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("client-secret");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let file = file.to_str().unwrap();
        let args = |extra: &[&str]| {
            let mut args = vec![
                "worker",
                "transcriber",
                "--transcription-api-url",
                "http://api.test",
                "--auth-url",
                "http://auth.test",
                "--worker-client-id",
                "worker",
            ];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let Command::Transcriber(parsed) = args(&["--worker-client-secret-file", file])
            .unwrap()
            .command
        else {
            panic!("not the transcriber");
        };
        let config = parsed.to_config().unwrap();
        assert_eq!(
            config.credentials.client_secret.expose_secret(),
            "from-a-file"
        );

        let both = args(&[
            "--worker-client-secret-file",
            file,
            "--worker-client-secret",
            "other",
        ]);
        assert_eq!(
            both.unwrap_err().kind(),
            clap::error::ErrorKind::ArgumentConflict
        );

        let missing = dir.join("missing");
        let Command::Transcriber(parsed) =
            args(&["--worker-client-secret-file", missing.to_str().unwrap()])
                .unwrap()
                .command
        else {
            panic!("not the transcriber");
        };
        let err = parsed.to_config().unwrap_err().to_string();
        assert!(err.contains(missing.to_str().unwrap()), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn command_engine_line_is_split() {
        let config = transcriber(&["--engine", "command", "--engine-command", "whisper 'a b'"])
            .to_config()
            .unwrap();
        match config.engine {
            crate::EngineConfig::Command { program, args, .. } => {
                assert_eq!(program, "whisper");
                assert_eq!(args, ["a b"]);
            }
            other => panic!("{other:?}"),
        }
    }

    /// README, Fault tolerance: the heartbeat (`HEARTBEAT_TTL_SECS`, default 30) is renewed every
    /// third of its TTL and every worker's maintenance loop reaps every 2 s; the recovery time
    /// of a dead worker's jobs follows from these values (the key's lifetime and renewals as
    /// Redis shows them: `tests/it/heartbeat.rs`).
    #[test]
    fn workers_renew_the_heartbeat_every_third_of_the_ttl_and_reap_every_2_seconds() {
        use std::time::Duration;
        let notifier = match Cli::try_parse_from(["worker", "notifier"]).unwrap().command {
            Command::Notifier(args) => args.to_config().unwrap().run,
            other => panic!("{other:?}"),
        };
        let transcriber_run = transcriber(&[]).to_config().unwrap().run;
        for run in [notifier, transcriber_run] {
            assert_eq!(run.heartbeat_ttl, Duration::from_secs(30));
            assert_eq!(run.heartbeat_interval(), Duration::from_secs(10));
            assert_eq!(run.maintenance_interval, Duration::from_secs(2));
        }
        let custom = transcriber(&["--heartbeat-ttl-secs", "9"])
            .to_config()
            .unwrap()
            .run;
        assert_eq!(custom.heartbeat_interval(), Duration::from_secs(3));
        assert_eq!(custom.maintenance_interval, Duration::from_secs(2));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(transcriber(&["--concurrency", "0"]).to_config().is_err());
        assert!(
            transcriber(&["--job-timeout-secs", "0"])
                .to_config()
                .is_err()
        );
        assert!(
            transcriber(&["--api-timeout-secs", "0"])
                .to_config()
                .is_err()
        );
        let short = transcriber(&["--job-timeout-secs", "7"])
            .to_config()
            .unwrap();
        assert_eq!(short.run.job_timeout, std::time::Duration::from_secs(7));
        let mut args = transcriber(&[]);
        args.api.transcription_api_url = Some("ftp://x".into());
        assert!(args.to_config().is_err());
    }
}
