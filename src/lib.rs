//! The whole transcription platform in one process (`cargo run --release`): the auth server,
//! transcription-api, and the worker's transcriber and notifier, sharing one queue.
//!
//! [`Stack::start`] brings everything up on the configured addresses (port 0 in tests) with
//! SQLite files under the data directory and the embedded queue, or PostgreSQL and Redis when
//! their URLs are given; on first start it registers the demo client and user ([`demo`]).
//! transcription-api's listener also serves the sample recording ([`sample`]) and the demo web
//! app ([`web_app`]), where a person signs in through the auth server's pages.

pub mod demo;
pub mod reset;
pub mod sample;
pub mod web_app;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use auth_server::Revocations;
use auth_server::config::{ServerConfig, SystemSecrets};
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use contracts::jobs::{NotifyJob, TranscribeJob};
use contracts::scopes::TRANSCRIPTIONS_REPORT;
use job_queue::{Job, QueueConfig, ReliableQueue, SigningKey};
use secrecy::{ExposeSecret, SecretString};
use token_guard::{
    RedisRevocationConfig, RedisRevocationList, RevocationList, StaticRevocationList,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use transcription_api::config::ApiConfig;
use worker::api::ClientCredentials;
use worker::download::DownloadLimits;
use worker::notifier::{DEFAULT_SMTP_TIMEOUT, MailConfig, ReportConfig};
use worker::{EngineConfig, Notifier, NotifierConfig, RunConfig, Transcriber, TranscriberConfig};

use demo::DemoCredentials;
use web_app::{DemoWebApp, WebAppConfig};

/// Path of the sample recording the API serves in this mode.
pub const SAMPLE_PATH: &str = "/samples/hello.wav";
/// The file in the data directory holding the generated `AUTH_SECRETS` of the auth database.
pub const AUTH_SECRETS_FILE: &str = "auth-secrets";
/// How often revocations made at the auth server reach the API without Redis.
const REVOCATION_POLL: Duration = Duration::from_secs(1);
/// How long the transcriber's and the notifier's in-flight jobs may run on after Ctrl-C or
/// SIGTERM before they are returned to the queue (README, "Ctrl-C": "for up to 10 s").
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Everything the stack can be told.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub auth_bind: SocketAddr,
    pub api_bind: SocketAddr,
    /// SQLite files, the mail outbox, the demo credentials, the generated `auth-secrets`.
    pub data_dir: PathBuf,
    /// Import source only: the keys directory of an earlier version (signing keys and the
    /// client-secret pepper), moved into the auth database once.
    pub keys_dir: PathBuf,
    /// `AUTH_SECRETS` of the auth database (comma-separated); default the `auth-secrets` file
    /// in `data_dir`, generated when the database is fresh.
    pub auth_secrets: Option<SecretString>,
    /// `postgres://…` for both services' tables; default SQLite files in `data_dir`.
    pub database_url: Option<String>,
    /// Redis for the queue and the revoked-token list; default the embedded SQLite queue.
    pub redis_url: Option<SecretString>,
    pub queue_prefix: String,
    /// HMAC key of the jobs; default one generated into `data_dir` on first start.
    pub job_signing_key: Option<SecretString>,
    /// Mail server; without it mails are written to `data_dir/outbox/`.
    pub smtp_url: Option<SecretString>,
    pub mail_from: String,
    /// Simulated transcription time.
    pub transcribe_delay: Duration,
    /// Let the transcriber fetch audio from any private address. Off: of all non-public
    /// addresses only the stack's own sample origin (scheme, host and port of `/samples/`).
    pub allow_private_urls: bool,
}

impl StackConfig {
    /// The defaults of `cargo run --release`.
    pub fn new(data_dir: impl Into<PathBuf>, keys_dir: impl Into<PathBuf>) -> StackConfig {
        StackConfig {
            auth_bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_bind: SocketAddr::from(([127, 0, 0, 1], 8081)),
            data_dir: data_dir.into(),
            keys_dir: keys_dir.into(),
            auth_secrets: None,
            database_url: None,
            redis_url: None,
            queue_prefix: "transcribe".to_owned(),
            job_signing_key: None,
            smtp_url: None,
            mail_from: "Transcriptions <transcriptions@localhost>".to_owned(),
            transcribe_delay: Duration::from_secs(2),
            allow_private_urls: false,
        }
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.data_dir.join("outbox")
    }

    fn sqlite(&self, file: &str) -> String {
        format!("sqlite:{}", self.data_dir.join(file).display())
    }
}

/// The running platform.
pub struct Stack {
    pub auth_url: String,
    pub api_url: String,
    /// The demo web app's sign-in URL ([`web_app::START_PATH`] on transcription-api's address):
    /// opened in a browser, it leads through the auth server's login and consent pages.
    pub sign_in_url: String,
    pub credentials: DemoCredentials,
    /// The demo credentials were created by this start.
    pub created: bool,
    pub credentials_file: PathBuf,
    /// Where mails go without SMTP.
    pub outbox_dir: PathBuf,
    /// The queue both services and the workers use.
    pub queue: Arc<dyn ReliableQueue>,
    stages: Stages,
}

/// Resolves when `stop` flips to true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// What a part of the stack is given to learn that its stage is stopping.
type Stopping = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Parts of the stack that are stopped together.
struct Stage {
    name: &'static str,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Stage {
    fn new(name: &'static str) -> Stage {
        Stage {
            name,
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
        }
    }

    /// Runs the part `start` returns until this stage is stopped.
    fn spawn<F>(&mut self, start: impl FnOnce(Stopping) -> F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks
            .spawn(start(Box::pin(stopped(self.stop.subscribe()))));
    }

    /// Tells the parts to stop and waits for all of them; returns the first failure.
    async fn stop(&mut self) -> Option<anyhow::Error> {
        tracing::info!(stage = self.name, "stopping");
        let _ = self.stop.send(true);
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(err) = result {
                tracing::error!(stage = self.name, error = %err, "a part of the stack failed");
                first_error.get_or_insert(err);
            }
        }
        first_error
    }
}

/// The stack's parts in the order they stop: the workers first, because a job in flight
/// downloads the sample from transcription-api and reports there with a token of the auth
/// server; then the HTTP servers, which drain their in-flight requests; then the background
/// tasks that serve the servers. Submissions that arrive while the workers drain are still
/// accepted (the servers stop accepting connections only when they stop): they are committed
/// with their outbox entry and queued for the next start, like the notify jobs of the jobs
/// that finish during the drain.
struct Stages {
    /// The transcriber and the notifier: they stop reserving at once and let in-flight jobs
    /// finish for the shutdown grace (then return them to the queue without a failure).
    workers: Stage,
    /// The auth server and transcription-api (with its outbox relay).
    servers: Stage,
    /// The copy of the deny-list into the API's revocation list (without Redis).
    background: Stage,
}

impl Stages {
    fn new() -> Stages {
        Stages {
            workers: Stage::new("workers"),
            servers: Stage::new("HTTP servers"),
            background: Stage::new("background tasks"),
        }
    }

    /// Stops every stage in order; the first failure of any part.
    async fn stop(&mut self) -> Option<anyhow::Error> {
        let mut first_error = None;
        for stage in [&mut self.workers, &mut self.servers, &mut self.background] {
            if let Some(err) = stage.stop().await {
                first_error.get_or_insert(err);
            }
        }
        first_error
    }
}

impl Stack {
    /// Starts every part; on error, what was started is stopped again.
    pub async fn start(config: StackConfig) -> anyhow::Result<Stack> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let mut stages = Stages::new();
        let started = Self::start_parts(&config, &mut stages).await;
        match started {
            Ok(parts) => Ok(Stack {
                auth_url: parts.auth_url,
                api_url: parts.api_url,
                sign_in_url: parts.sign_in_url,
                credentials: parts.credentials,
                created: parts.created,
                credentials_file: parts.credentials_file,
                outbox_dir: parts.outbox_dir,
                queue: parts.queue,
                stages,
            }),
            Err(err) => {
                stages.stop().await;
                Err(err)
            }
        }
    }

    async fn start_parts(config: &StackConfig, stages: &mut Stages) -> anyhow::Result<StackParts> {
        let auth_db = config
            .database_url
            .clone()
            .unwrap_or_else(|| config.sqlite("auth-server.db"));
        let api_db = config
            .database_url
            .clone()
            .unwrap_or_else(|| config.sqlite("transcription-api.db"));
        let redis_url = config
            .redis_url
            .as_ref()
            .map(|u| u.expose_secret().to_owned());

        // One recorder per process, with every part's histograms and descriptions: it serves
        // the /metrics of the auth server and of the API with every part's metrics.
        let metrics = plumbing::metrics::install_prometheus(&[
            auth_server::telemetry::METRICS,
            transcription_api::METRICS,
            worker::telemetry::METRICS,
        ])
        .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
        .ok();

        // The auth server.
        let mut auth_config =
            ServerConfig::new(config.auth_bind, &auth_db, config.keys_dir.clone());
        auth_config.secrets = Some(auth_secrets(config, &auth_db).await?);
        auth_config.metrics = metrics.clone();
        auth_config.redis = redis_url
            .clone()
            .map(|url| (url, config.queue_prefix.clone()));
        let auth = auth_server::Application::build(auth_config)
            .await
            .context("starting the auth server")?;
        let auth_url = format!("http://{}", auth.local_addr());
        let issuer = auth.issuer().to_owned();
        let auth_admin = auth.admin();
        let auth_revocations = auth.revocations();
        stages
            .servers
            .spawn(|stopping| async move { Ok(auth.run_until(stopping).await?) });

        // The queue and the revoked-token list the API consults.
        let key = job_signing_key(config)?;
        let queue = job_queue::connect(
            redis_url.as_deref(),
            &config.sqlite("queue.db"),
            &config.queue_prefix,
            key,
            QueueConfig::default(),
        )
        .await
        .context("opening the job queue")?;
        let revocations: Arc<dyn RevocationList> = match &redis_url {
            Some(url) => Arc::new(
                RedisRevocationList::connect(
                    RedisRevocationConfig::new(url.clone())
                        .with_prefix(config.queue_prefix.clone()),
                )
                .await
                .context("reading the revoked-token list from Redis")?,
            ),
            None => {
                let list = Arc::new(StaticRevocationList::new());
                let copy = list.clone();
                stages
                    .background
                    .spawn(|stopping| mirror_revocations(auth_revocations, copy, stopping));
                list
            }
        };

        // transcription-api, with the sample recording.
        let mut api_config = ApiConfig::new(config.api_bind, &api_db, &issuer);
        api_config.outbox.relay_interval = Duration::from_secs(5);
        let api = transcription_api::Application::build(
            api_config,
            transcription_api::Services {
                queue: queue.clone(),
                revocations,
                metrics,
            },
        )
        .await
        .context("starting transcription-api")?
        .merge(sample_routes());
        let api_url = format!("http://{}", api.local_addr());

        // The demo clients and user (first start), the demo web app beside the API, then the
        // workers with the worker's client.
        let credentials_file = config.data_dir.join("demo-credentials.json");
        let (credentials, created) =
            demo::ensure(&auth_admin, &credentials_file, &auth_url, &api_url).await?;
        let web_app = DemoWebApp::new(WebAppConfig {
            issuer: issuer.clone(),
            base_url: api_url.clone(),
            client_id: credentials.web_client_id.clone(),
            client_secret: SecretString::from(credentials.web_client_secret.clone()),
        })
        .context("the demo web app's HTTP client")?;
        let sign_in_url = format!("{api_url}{}", web_app::START_PATH);
        let api = api.merge(web_app.router());
        stages
            .servers
            .spawn(|stopping| async move { Ok(api.run_until(stopping).await?) });

        let worker_credentials = ClientCredentials {
            token_url: format!("{auth_url}/oauth/token"),
            client_id: credentials.worker_client_id.clone(),
            client_secret: SecretString::from(credentials.worker_client_secret.clone()),
            scope: TRANSCRIPTIONS_REPORT.to_owned(),
        };
        let transcriber = Transcriber::new(
            TranscriberConfig {
                run: run_config("transcriber", TranscribeJob::QUEUE),
                notify_queue: NotifyJob::QUEUE.to_owned(),
                api_url: api_url.clone(),
                credentials: worker_credentials.clone(),
                // The sample is served from the stack's own address: that origin, and no other
                // private one, may be fetched (unless the operator allows them all).
                download: DownloadLimits {
                    allow_private: config.allow_private_urls,
                    allowed_origins: vec![
                        reqwest::Url::parse(&api_url).context("the API's own URL")?,
                    ],
                    ..DownloadLimits::default()
                },
                engine: EngineConfig::Simulated {
                    delay: config.transcribe_delay,
                },
                scratch_dir: config.data_dir.join("scratch"),
                api_timeout: worker::api::DEFAULT_CALL_TIMEOUT,
            },
            queue.clone(),
        )?;
        stages.workers.spawn(|stopping| async move {
            transcriber.run(stopping).await?;
            Ok(())
        });
        let notifier = Notifier::new(
            NotifierConfig {
                run: run_config("notifier", NotifyJob::QUEUE),
                mail: MailConfig {
                    smtp_url: config.smtp_url.clone(),
                    from: config.mail_from.clone(),
                    outbox_dir: config.outbox_dir(),
                    smtp_timeout: DEFAULT_SMTP_TIMEOUT,
                    smtp_ca_file: None,
                },
                report: Some(ReportConfig {
                    api_url: api_url.clone(),
                    credentials: worker_credentials.clone(),
                }),
            },
            queue.clone(),
        )?;
        stages.workers.spawn(|stopping| async move {
            notifier.run(stopping).await?;
            Ok(())
        });

        Ok(StackParts {
            auth_url,
            api_url,
            sign_in_url,
            credentials,
            created,
            credentials_file,
            outbox_dir: config.outbox_dir(),
            queue,
        })
    }

    /// Runs until `signal` completes, then stops every part and waits for them.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        signal.await;
        self.shutdown().await
    }

    /// Stops every part, in order: the workers stop reserving and finish
    /// their in-flight jobs (or return them to the queue after the shutdown grace) while both
    /// servers still answer their reports; then the servers drain in-flight requests.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stages.stop().await.map_or(Ok(()), Err)
    }
}

/// [`Stack`] without its control handles, while starting.
struct StackParts {
    auth_url: String,
    api_url: String,
    sign_in_url: String,
    credentials: DemoCredentials,
    created: bool,
    credentials_file: PathBuf,
    outbox_dir: PathBuf,
    queue: Arc<dyn ReliableQueue>,
}

/// The run settings of the stack's transcriber and notifier: the worker's defaults with the
/// stack's [`SHUTDOWN_GRACE`].
fn run_config(role: &str, queue: &str) -> RunConfig {
    RunConfig {
        shutdown_grace: SHUTDOWN_GRACE,
        ..RunConfig::new(role, queue)
    }
}

/// `GET /samples/hello.wav`: the generated sample recording.
fn sample_routes() -> Router {
    let wav = sample::sample_wav();
    Router::new().route(
        SAMPLE_PATH,
        get(move || {
            let wav = wav.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"))],
                    wav,
                )
            }
        }),
    )
}

/// `--auth-secrets`, else the `auth-secrets` file of the data directory, generated (32 random
/// bytes, base64url, mode 0600) only while the auth database holds nothing sealed: a database
/// sealed under a secret that is not here is refused rather than given a new one.
async fn auth_secrets(config: &StackConfig, auth_db: &str) -> anyhow::Result<SystemSecrets> {
    if let Some(list) = &config.auth_secrets {
        return SystemSecrets::from_list(list).context("AUTH_SECRETS");
    }
    let file = config.data_dir.join(AUTH_SECRETS_FILE);
    let read = |file: &Path| -> anyhow::Result<SystemSecrets> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        SystemSecrets::from_lines(&SecretString::from(text))
            .with_context(|| format!("the secrets in {}", file.display()))
    };
    if file.exists() {
        return read(&file);
    }
    if auth_server::admin::is_sealed(auth_db)
        .await
        .context("opening the auth database")?
    {
        anyhow::bail!(
            "{} is missing, but the auth database is encrypted with a secret: restore the file, pass --auth-secrets (AUTH_SECRETS), or start fresh with --reset",
            file.display()
        );
    }
    let secret = SystemSecrets::generate_secret()?;
    match write_private_file(&file, secret.expose_secret().as_bytes()) {
        Ok(()) => {
            tracing::info!(file = %file.display(), "fresh auth database: generated its AUTH_SECRETS");
            read(&file)
        }
        // Another stack on this data directory wrote it first.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => read(&file),
        Err(err) => Err(err).with_context(|| format!("writing {}", file.display())),
    }
}

/// The configured key, or the one generated into the data directory on first start.
fn job_signing_key(config: &StackConfig) -> anyhow::Result<SigningKey> {
    if let Some(key) = &config.job_signing_key {
        return SigningKey::new(key.expose_secret().as_bytes()).context("JOB_SIGNING_KEY");
    }
    let file = config.data_dir.join("job-signing-key");
    let secret = match std::fs::read_to_string(&file) {
        Ok(text) => text.trim().to_owned(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let secret = SystemSecrets::generate_secret()?.expose_secret().to_owned();
            write_private_file(&file, secret.as_bytes())
                .with_context(|| format!("writing {}", file.display()))?;
            secret
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", file.display())),
    };
    SigningKey::new(secret.as_bytes()).with_context(|| format!("the key in {}", file.display()))
}

/// Writes `contents` to a new file (refused if it exists) readable by the owner only (mode
/// 0600 whatever the umask), and syncs it.
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Without Redis, copies the auth server's deny-list (revoked jtis and the per-user and
/// per-client cutoffs) into the API's revocation list every second.
async fn mirror_revocations(
    revocations: Revocations,
    list: Arc<StaticRevocationList>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(REVOCATION_POLL);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = ticks.tick() => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
                let now = i64::try_from(now).unwrap_or(i64::MAX);
                match revocations.in_force(now).await {
                    Ok(in_force) => {
                        for (jti, expires_at) in in_force.denied {
                            list.insert(jti, u64::try_from(expires_at).unwrap_or_default());
                        }
                        for cutoff in in_force.cutoffs {
                            list.insert_cutoff(
                                cutoff.kind,
                                cutoff.subject,
                                u64::try_from(cutoff.not_before_ms).unwrap_or_default(),
                                u64::try_from(cutoff.expires_at).unwrap_or_default(),
                            );
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "reading the deny-list failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use contracts::jobs::{NotifyJob, TranscribeJob};
    use job_queue::Job;

    use super::run_config;

    /// README, "Ctrl-C": in-flight jobs finish "for up to 10 s", on both workers the stack
    /// runs (the value is written out: the README's number, not the constant).
    #[test]
    fn the_stacks_workers_get_10_s_to_finish_their_jobs_on_ctrl_c() {
        for (role, queue) in [
            ("transcriber", TranscribeJob::QUEUE),
            ("notifier", NotifyJob::QUEUE),
        ] {
            let config = run_config(role, queue);
            assert_eq!(config.shutdown_grace, Duration::from_secs(10), "{role}");
            assert_eq!(config.queue, queue, "{role}");
        }
    }
}
