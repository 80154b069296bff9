//! `worker notifier`: consumes `notify` jobs and tells the user by e-mail, through SMTP
//! (lettre; `smtp://` with opportunistic STARTTLS, `smtp://…?tls=required`, `smtps://` with
//! implicit TLS; rustls on aws-lc-rs, the server's certificate verified against the platform's
//! roots and, with [`SmtpMailer::with_extra_roots`], a private CA) or, without `SMTP_URL`, as
//! `<outbox-dir>/<key>.eml` files.
//!
//! Idempotency by job id (`notify-<key>`, the key being the transcription id, with
//! `-attempt-<n>` from an owner's first retry on: [`NotifyJob::delivery_key`]): the outbox
//! file is written once (atomically, by rename) and a redelivery finds it and does nothing; in
//! SMTP mode the marker `notify-sent:<key>` is set in the queue backend
//! ([`ReliableQueue::set_marker`]:
//! Redis, or the embedded queue's database, so replicas on different machines share it) after
//! the server accepted the message, and a redelivery finds it and skips sending. The
//! Message-ID is derived from the job id too, so a duplicate that slips through the crash
//! window between send and marker can be recognised by the mail system.
//!
//! Failures: a whole SMTP send (connect, greeting, every command) has one deadline
//! ([`MailConfig::smtp_timeout`]; lettre's own timeout bounds only the connect), and a send
//! that runs out of it is a transient failure, retried with back-off. A permanent one (a 5xx
//! reply, a refused recipient, an address lettre cannot parse) is a
//! [`JobError::Permanent`]: the job goes to the dead list at once.
//!
//! Notification state: with [`NotifierConfig::report`] set, the notifier reports `sent` after
//! a delivery and `failed` with the reason when the job dies, through
//! `PUT /internal/transcriptions/{id}/notification`. An API that answers 404 (an unknown id, or
//! a version without the route) is logged and otherwise ignored: it never fails the job.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::jobs::{NotifyJob, NotifyStatus};
use contracts::report::NotificationReport;
use job_queue::{Envelope, ReliableQueue};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use crate::api::{ApiError, ClientCredentials, ReportOutcome, TokenSource, TranscriptionApi};
use crate::runner::{JobError, JobHandler, RunConfig, RunError, RunSummary, WorkerLoop};

/// How mail leaves the notifier.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `smtp://[user:pass@]host[:port][?tls=none|opportunistic|required]` or
    /// `smtps://…`; `None` writes `.eml` files to `outbox_dir` instead.
    pub smtp_url: Option<SecretString>,
    /// The From address, e.g. `Transcriptions <noreply@example.com>`.
    pub from: String,
    pub outbox_dir: PathBuf,
    /// SMTP mode: deadline of one whole send (connect, greeting and every command).
    pub smtp_timeout: Duration,
    /// SMTP mode: a PEM file of CA certificates the server's certificate may also chain to,
    /// besides the system's roots (`SMTP_CA_FILE`: the private CA of an internal relay).
    pub smtp_ca_file: Option<PathBuf>,
}

/// Default of [`MailConfig::smtp_timeout`].
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a "sent" marker is kept: longer than any redelivery of a notify job can take.
pub const SENT_MARKER_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where the notifier reports the notification state of a transcription.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// transcription-api base URL (`TRANSCRIPTION_API_URL`).
    pub api_url: String,
    /// The worker's client (scope
    /// [`TRANSCRIPTIONS_REPORT`](contracts::scopes::TRANSCRIPTIONS_REPORT)).
    pub credentials: ClientCredentials,
}

/// Everything the notifier needs.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    pub run: RunConfig,
    pub mail: MailConfig,
    /// `None`: the notification state is not reported (only logged).
    pub report: Option<ReportConfig>,
}

/// Why mail configuration or delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid SMTP_URL: {0}")]
    SmtpUrl(String),
    #[error("SMTP CA certificates: {0}")]
    Ca(String),
    #[error("invalid MAIL_FROM `{0}`")]
    From(String),
    #[error("invalid recipient address `{0}`")]
    Recipient(String),
    #[error("cannot build the message: {0}")]
    Message(String),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("SMTP: no answer within {0:?}")]
    Timeout(Duration),
    #[error("sent markers: {0}")]
    Marker(#[from] job_queue::QueueError),
    #[error("outbox: {0}")]
    Io(#[from] std::io::Error),
}

impl MailError {
    /// `true` when sending the same message again cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            MailError::Recipient(_) | MailError::Message(_) => true,
            MailError::Smtp(err) => err.is_permanent(),
            _ => false,
        }
    }
}

/// Where a message goes.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Delivers `message` unless the message named `key` ([`NotifyJob::delivery_key`]: the
    /// transcription id, with the attempt from the second on) was delivered before.
    async fn deliver(&self, key: &str, message: Message) -> Result<(), MailError>;
}

/// Writes each message to `<dir>/<key>.eml` (once); the key is the transcription id for a
/// first attempt.
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    dir: PathBuf,
}

impl OutboxMailer {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        OutboxMailer { dir: dir.into() }
    }

    /// The file the message named `key` is written to.
    pub fn path_for(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.eml"))
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn deliver(&self, key: &str, message: Message) -> Result<(), MailError> {
        let path = self.path_for(key);
        if tokio::fs::try_exists(&path).await? {
            tracing::info!(path = %path.display(), "message already in the outbox");
            return Ok(());
        }
        tokio::fs::create_dir_all(&self.dir).await?;
        write_atomically(&self.dir, &path, &message.formatted()).await?;
        tracing::info!(path = %path.display(), "message written to the outbox");
        Ok(())
    }
}

/// Writes `bytes` to a temporary file in `dir` and renames it to `path`.
async fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&tmp, bytes).await?;
    if let Err(err) = tokio::fs::rename(&tmp, path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(err);
    }
    Ok(())
}

/// Sends through an SMTP server.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port` for logs (never the credentials).
    server: String,
    /// Deadline of one whole send.
    timeout: Duration,
    /// Holds the "sent" markers (the queue backend).
    markers: Arc<dyn ReliableQueue>,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.server)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// Parses `smtp_url` (see [`MailConfig::smtp_url`]); `markers` keeps the "sent" markers,
    /// `timeout` bounds each whole send. The server's certificate must chain to the system's
    /// roots.
    pub fn new(
        smtp_url: &SecretString,
        timeout: Duration,
        markers: Arc<dyn ReliableQueue>,
    ) -> Result<Self, MailError> {
        SmtpMailer::build(smtp_url, timeout, markers, None)
    }

    /// Like [`new`](Self::new), and the server's certificate may also chain to one of the CA
    /// certificates in `ca_pem` (PEM, one or more): the private CA of an internal mail relay.
    pub fn with_extra_roots(
        smtp_url: &SecretString,
        timeout: Duration,
        markers: Arc<dyn ReliableQueue>,
        ca_pem: &[u8],
    ) -> Result<Self, MailError> {
        // `Certificate::from_pem` takes input without any certificate as an empty list.
        if !String::from_utf8_lossy(ca_pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(MailError::Ca("no PEM certificate found".into()));
        }
        let roots = Certificate::from_pem(ca_pem).map_err(|e| MailError::Ca(e.to_string()))?;
        SmtpMailer::build(smtp_url, timeout, markers, Some(roots))
    }

    fn build(
        smtp_url: &SecretString,
        timeout: Duration,
        markers: Arc<dyn ReliableQueue>,
        extra_roots: Option<Certificate>,
    ) -> Result<Self, MailError> {
        let url =
            Url::parse(smtp_url.expose_secret()).map_err(|e| MailError::SmtpUrl(e.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| MailError::SmtpUrl("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let mode = url
            .query_pairs()
            .find(|(key, _)| key == "tls")
            .map(|(_, value)| value.into_owned());
        let (default_port, tls) = match (url.scheme(), mode.as_deref()) {
            ("smtps", None | Some("required") | Some("wrapper")) => {
                (465, Tls::Wrapper(tls_parameters(&host, extra_roots)?))
            }
            ("smtp", None | Some("opportunistic")) => {
                (25, Tls::Opportunistic(tls_parameters(&host, extra_roots)?))
            }
            ("smtp", Some("required")) => (25, Tls::Required(tls_parameters(&host, extra_roots)?)),
            ("smtp", Some("none")) => (25, Tls::None),
            ("smtp" | "smtps", Some(other)) => {
                return Err(MailError::SmtpUrl(format!("unknown tls mode `{other}`")));
            }
            (scheme, _) => {
                return Err(MailError::SmtpUrl(format!(
                    "scheme must be smtp or smtps, not `{scheme}`"
                )));
            }
        };
        let port = url.port().unwrap_or(default_port);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
            .port(port)
            .tls(tls)
            .timeout(Some(timeout));
        if !url.username().is_empty() {
            let user = percent_decode(url.username());
            let password = percent_decode(url.password().unwrap_or(""));
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(SmtpMailer {
            transport: builder.build(),
            server: format!("{host}:{port}"),
            timeout,
            markers,
        })
    }

    /// The name of the "sent" marker of the message named `key` (for a first attempt the
    /// transcription id).
    pub fn marker(key: impl std::fmt::Display) -> String {
        format!("notify-sent:{key}")
    }
}

/// Verification against the platform's roots (rustls-platform-verifier), plus `extra_roots`.
fn tls_parameters(
    host: &str,
    extra_roots: Option<Certificate>,
) -> Result<TlsParameters, MailError> {
    let mut builder = TlsParameters::builder(host.to_owned());
    if let Some(roots) = extra_roots {
        builder = builder.add_root_certificate(roots);
    }
    builder.build().map_err(MailError::Smtp)
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%'
            && let Some(hex) = value.get(i + 1..i + 3)
            && let Ok(decoded) = u8::from_str_radix(hex, 16)
        {
            out.push(decoded);
            i += 3;
            continue;
        }
        out.push(byte);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn deliver(&self, key: &str, message: Message) -> Result<(), MailError> {
        let marker = SmtpMailer::marker(key);
        if self.markers.has_marker(&marker).await? {
            tracing::info!(%key, "message was sent before; not sending again");
            return Ok(());
        }
        let response = tokio::time::timeout(self.timeout, self.transport.send(message))
            .await
            .map_err(|_| MailError::Timeout(self.timeout))??;
        tracing::info!(server = %self.server, code = %response.code(), "message accepted by the SMTP server");
        if let Err(err) = self.markers.set_marker(&marker, SENT_MARKER_TTL).await {
            // The mail is out; failing the job now would send it again.
            tracing::warn!(error = %err, "could not record the sent message");
        }
        Ok(())
    }
}

/// The notifier: a [`WorkerLoop`] over [`NotifyHandler`].
pub struct Notifier {
    run: RunConfig,
    queue: Arc<dyn ReliableQueue>,
    handler: Arc<NotifyHandler>,
}

impl Notifier {
    /// Builds the notifier; fails on a bad `SMTP_URL` or `MAIL_FROM`.
    pub fn new(config: NotifierConfig, queue: Arc<dyn ReliableQueue>) -> Result<Self, RunError> {
        let mail = &config.mail;
        let mailer: Arc<dyn Mailer> = match (&mail.smtp_url, &mail.smtp_ca_file) {
            (Some(url), None) => Arc::new(
                SmtpMailer::new(url, mail.smtp_timeout, queue.clone())
                    .map_err(|e| RunError::Config(e.to_string()))?,
            ),
            (Some(url), Some(path)) => {
                let pem = std::fs::read(path).map_err(|e| {
                    RunError::Config(format!("cannot read SMTP_CA_FILE {}: {e}", path.display()))
                })?;
                Arc::new(
                    SmtpMailer::with_extra_roots(url, mail.smtp_timeout, queue.clone(), &pem)
                        .map_err(|e| {
                            RunError::Config(format!("SMTP_CA_FILE {}: {e}", path.display()))
                        })?,
                )
            }
            (None, _) => Arc::new(OutboxMailer::new(mail.outbox_dir.clone())),
        };
        Notifier::with_mailer(config, queue, mailer)
    }

    /// Builds the notifier with a custom mailer.
    pub fn with_mailer(
        config: NotifierConfig,
        queue: Arc<dyn ReliableQueue>,
        mailer: Arc<dyn Mailer>,
    ) -> Result<Self, RunError> {
        let from: Mailbox =
            config.mail.from.parse().map_err(|_| {
                RunError::Config(MailError::From(config.mail.from.clone()).to_string())
            })?;
        let api = match &config.report {
            Some(report) => {
                let http = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| RunError::Config(format!("HTTP client: {e}")))?;
                let tokens = Arc::new(TokenSource::new(http.clone(), report.credentials.clone()));
                Some(TranscriptionApi::new(http, &report.api_url, tokens))
            }
            None => None,
        };
        Ok(Notifier {
            run: config.run,
            queue,
            handler: Arc::new(NotifyHandler { from, mailer, api }),
        })
    }

    /// The job handler (to process one envelope directly, e.g. in tests).
    pub fn handler(&self) -> Arc<NotifyHandler> {
        self.handler.clone()
    }

    /// Consumes the notify queue until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<RunSummary, RunError> {
        WorkerLoop::new(self.queue, self.handler, self.run)
            .run(shutdown)
            .await
    }
}

/// Handles one `notify` job.
pub struct NotifyHandler {
    from: Mailbox,
    mailer: Arc<dyn Mailer>,
    /// Where the notification state is reported, if anywhere.
    api: Option<TranscriptionApi>,
}

impl NotifyHandler {
    /// Reports the notification state of `id`. Only an unreachable API is an error (the job is
    /// retried; the "sent" marker keeps the mail from going out twice); anything else is
    /// logged.
    async fn report(&self, id: uuid::Uuid, report: &NotificationReport) -> Result<(), JobError> {
        let Some(api) = &self.api else {
            tracing::debug!(%id, ?report, "notification state not reported (no API configured)");
            return Ok(());
        };
        match api.report_notification(id, report).await {
            Ok(ReportOutcome::Accepted) => {
                tracing::info!(%id, ?report, "notification state reported");
                Ok(())
            }
            Ok(ReportOutcome::AlreadyFinal) => {
                tracing::warn!(%id, ?report, "the API holds a different final notification state (409)");
                Ok(())
            }
            Err(ApiError::NotFound(_)) => {
                tracing::warn!(%id, ?report, "notification state not reported: the API answered 404 (unknown transcription, or no notification route)");
                Ok(())
            }
            Err(err @ ApiError::Unavailable(_)) => Err(JobError::Transient(format!(
                "cannot report the notification state: {err}"
            ))),
            Err(err) => {
                tracing::warn!(%id, ?report, error = %err, "notification state not reported");
                Ok(())
            }
        }
    }

    /// The e-mail for a notify job; `key` ([`NotifyJob::delivery_key`]) makes its Message-ID.
    pub fn compose(&self, job: &NotifyJob, key: &str) -> Result<Message, MailError> {
        let to: Mailbox = job
            .email
            .parse()
            .map_err(|_| MailError::Recipient(job.email.clone()))?;
        let id = job.transcription_id;
        let (subject, body) = match job.status {
            NotifyStatus::Completed => (
                "Your transcription is ready",
                format!(
                    "Hello,\n\nyour audio file has been transcribed (transcription {id}).\n\n\
                     Transcript:\n\n{}\n",
                    job.transcript
                ),
            ),
            NotifyStatus::Failed => (
                "Your transcription failed",
                format!(
                    "Hello,\n\nunfortunately your audio file could not be transcribed \
                     (transcription {id}).\n{}",
                    if job.transcript.is_empty() {
                        String::new()
                    } else {
                        format!("\n{}\n", job.transcript)
                    }
                ),
            ),
        };
        let domain = self.from.email.domain().to_owned();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<notify-{key}@{domain}>")))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Message(e.to_string()))
    }
}

#[async_trait]
impl JobHandler for NotifyHandler {
    type Job = NotifyJob;

    async fn perform(&self, job: NotifyJob, envelope: &Envelope) -> Result<(), JobError> {
        let key = NotifyJob::delivery_key(&envelope.id);
        let message = self.compose(&job, key).map_err(mail_error)?;
        self.mailer
            .deliver(key, message)
            .await
            .map_err(mail_error)?;
        self.report(job.transcription_id, &NotificationReport::Sent)
            .await
    }

    async fn on_dead(&self, job: NotifyJob, _envelope: &Envelope, error: &JobError) {
        let reason = match error {
            JobError::Permanent(reason) | JobError::Transient(reason) => reason.clone(),
        };
        let failed = NotificationReport::Failed { reason };
        if let Err(err) = self.report(job.transcription_id, &failed).await {
            tracing::warn!(error = %err, "could not report the failed notification");
        }
    }
}

fn mail_error(err: MailError) -> JobError {
    if err.is_permanent() {
        JobError::Permanent(err.to_string())
    } else {
        JobError::Transient(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsing never touches the markers; an unmigrated in-memory queue is enough.
    async fn markers() -> Arc<dyn ReliableQueue> {
        let key = job_queue::SigningKey::new(&[7; 32]).unwrap();
        let queue = job_queue::SqliteQueue::connect(
            "sqlite::memory:",
            key,
            job_queue::QueueConfig::default(),
        )
        .await
        .unwrap();
        Arc::new(queue)
    }

    #[tokio::test]
    async fn smtp_urls_are_parsed() {
        let ok = [
            "smtp://mail.example.com",
            "smtp://user:p%40ss@mail.example.com:587",
            "smtp://127.0.0.1:2525?tls=none",
            "smtp://mail.example.com?tls=required",
            "smtps://mail.example.com",
        ];
        for url in ok {
            let mailer = SmtpMailer::new(
                &SecretString::from(url),
                DEFAULT_SMTP_TIMEOUT,
                markers().await,
            )
            .unwrap();
            assert!(!format!("{mailer:?}").contains("p%40ss"));
        }
        for bad in ["http://x", "smtp://x?tls=maybe", "not a url"] {
            assert!(
                SmtpMailer::new(
                    &SecretString::from(bad),
                    DEFAULT_SMTP_TIMEOUT,
                    markers().await
                )
                .is_err(),
                "{bad}"
            );
        }
        assert_eq!(percent_decode("p%40ss%zz"), "p@ss%zz");
    }
}
