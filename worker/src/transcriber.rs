//! `worker transcriber`: consumes `transcribe` jobs. For each: report `processing` to
//! transcription-api, download the audio (see [`download`](crate::download)), run the
//! [`Engine`], report `completed` or `failed`, enqueue the `notify` job
//! (`notify-<transcribe job id>`, so a re-run is deduplicated while it is pending and each
//! attempt of a transcription gets its own e-mail) and ack.
//!
//! Error policy:
//! * audio that can never be transcribed (bad URL, refused address, too large, 4xx, engine
//!   failure) → reported `failed`, the user is notified, the job is acked;
//! * anything transient (5xx, timeouts, API or queue unreachable) → the job is failed and
//!   retried with backoff; when it finally goes dead the user is told it failed (best effort);
//! * API 404 (no record of the transcription) → the job is obsolete: acknowledged without
//!   downloading, reporting or notifying, never dead-lettered. Records reach the queue only
//!   through transcription-api's outbox, so a job without a record is a late duplicate of a
//!   record that is gone, not work that was lost;
//! * a bad payload → a permanent failure without compensation: the job goes to the dead list
//!   at once;
//! * API 409 (already final) counts as success. A redelivered job whose transcription is
//!   already final is still processed again (the engine is deterministic) so that a crash
//!   between the final report and the notify enqueue cannot lose the e-mail.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::jobs::{NotifyJob, NotifyStatus, TranscribeJob};
use contracts::report::ResultReport;
use job_queue::{Envelope, JobId, ReliableQueue};
use uuid::Uuid;

use crate::api::{ApiError, ClientCredentials, ReportOutcome, TokenSource, TranscriptionApi};
use crate::download::{AudioDownloader, DOWNLOAD_FAILED, DownloadLimits};
use crate::engine::{CommandEngine, ENGINE_FAILED, Engine, SimulatedEngine};
use crate::runner::{
    JOB_TIMED_OUT, JobError, JobHandler, RunConfig, RunError, RunSummary, WorkerLoop,
};
use crate::telemetry;

/// Which engine turns audio into text.
#[derive(Debug, Clone)]
pub enum EngineConfig {
    /// Deterministic fake text after `delay`.
    Simulated { delay: Duration },
    /// `program args… <file>`, killed after `timeout`.
    Command {
        program: String,
        args: Vec<String>,
        timeout: Duration,
    },
}

impl EngineConfig {
    pub fn build(&self) -> Arc<dyn Engine> {
        match self {
            EngineConfig::Simulated { delay } => Arc::new(SimulatedEngine::new(*delay)),
            EngineConfig::Command {
                program,
                args,
                timeout,
            } => Arc::new(CommandEngine::new(program.clone(), args.clone(), *timeout)),
        }
    }
}

/// Everything the transcriber needs.
#[derive(Debug, Clone)]
pub struct TranscriberConfig {
    pub run: RunConfig,
    /// Where notify jobs go.
    pub notify_queue: String,
    /// transcription-api base URL (`TRANSCRIPTION_API_URL`).
    pub api_url: String,
    pub credentials: ClientCredentials,
    pub download: DownloadLimits,
    pub engine: EngineConfig,
    /// Where downloaded audio is kept while it is transcribed.
    pub scratch_dir: PathBuf,
    /// Deadline of one call to the auth server or transcription-api (`API_TIMEOUT_SECS`).
    pub api_timeout: Duration,
}

/// The transcriber: a [`WorkerLoop`] over [`TranscribeHandler`].
pub struct Transcriber {
    run: RunConfig,
    queue: Arc<dyn ReliableQueue>,
    handler: Arc<TranscribeHandler>,
}

impl Transcriber {
    /// Builds the transcriber with the configured engine.
    pub fn new(config: TranscriberConfig, queue: Arc<dyn ReliableQueue>) -> Result<Self, RunError> {
        let engine = config.engine.build();
        Transcriber::with_engine(config, queue, engine)
    }

    /// Builds the transcriber with a custom engine.
    pub fn with_engine(
        config: TranscriberConfig,
        queue: Arc<dyn ReliableQueue>,
        engine: Arc<dyn Engine>,
    ) -> Result<Self, RunError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RunError::Config(format!("HTTP client: {e}")))?;
        let tokens = Arc::new(
            TokenSource::new(http.clone(), config.credentials.clone())
                .with_timeout(config.api_timeout),
        );
        let handler = TranscribeHandler {
            api: TranscriptionApi::new(http, &config.api_url, tokens)
                .with_timeout(config.api_timeout),
            downloader: AudioDownloader::new(config.download.clone()),
            engine,
            queue: queue.clone(),
            notify_queue: config.notify_queue.clone(),
            scratch_dir: config.scratch_dir.clone(),
        };
        Ok(Transcriber {
            run: config.run,
            queue,
            handler: Arc::new(handler),
        })
    }

    /// The job handler (to process one envelope directly, e.g. in tests).
    pub fn handler(&self) -> Arc<TranscribeHandler> {
        self.handler.clone()
    }

    /// Consumes the transcribe queue until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<RunSummary, RunError> {
        WorkerLoop::new(self.queue, self.handler, self.run)
            .run(shutdown)
            .await
    }
}

/// Handles one `transcribe` job (see the module docs).
pub struct TranscribeHandler {
    api: TranscriptionApi,
    downloader: AudioDownloader,
    engine: Arc<dyn Engine>,
    queue: Arc<dyn ReliableQueue>,
    notify_queue: String,
    scratch_dir: PathBuf,
}

/// What a report to the API found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    /// Accepted, or the transcription was already final (409, continuing idempotently).
    Recorded,
    /// The API has no record of the transcription (404): the job is obsolete.
    NoRecord,
}

/// How the download + engine step ended.
enum Transcription {
    Text(String),
    /// The audio can never be transcribed; the reason goes to the API and the logs.
    Impossible(String),
}

impl TranscribeHandler {
    async fn report(&self, id: Uuid, report: &ResultReport) -> Result<Reported, JobError> {
        match self.api.report(id, report).await {
            Ok(ReportOutcome::Accepted) => Ok(Reported::Recorded),
            Ok(ReportOutcome::AlreadyFinal) => {
                tracing::info!(%id, "transcription already final (409); continuing idempotently");
                Ok(Reported::Recorded)
            }
            Err(ApiError::NotFound(_)) => Ok(Reported::NoRecord),
            Err(err) => Err(api_error(err)),
        }
    }

    /// Downloads and transcribes; `Err` only for transient failures.
    async fn transcribe(&self, job: &TranscribeJob) -> Result<Transcription, JobError> {
        if let Err(err) = tokio::fs::create_dir_all(&self.scratch_dir).await {
            return Err(JobError::Transient(format!(
                "cannot create {}: {err}",
                self.scratch_dir.display()
            )));
        }
        let file = ScratchFile(self.scratch_dir.join(format!(
            "audio-{}-{}",
            job.transcription_id,
            Uuid::new_v4().simple()
        )));
        match self.downloader.fetch_to(&job.audio_url, &file.0).await {
            Ok(downloaded) => {
                tracing::info!(bytes = downloaded.bytes, "audio downloaded");
            }
            // The owner sees only the generic text and the class; the details go to the log.
            Err(err) => {
                tracing::warn!(error = %err, "audio download failed");
                let public = err.public_message();
                return if err.is_permanent() {
                    Ok(Transcription::Impossible(public))
                } else {
                    Err(JobError::Transient(public))
                };
            }
        }
        // As for downloads: the owner sees the generic text and the class, the log the rest.
        match self.engine.transcribe(&file.0).await {
            Ok(text) => Ok(Transcription::Text(text)),
            Err(err) => {
                tracing::warn!(error = %err, "transcription engine failed");
                let public = err.public_message();
                if err.is_permanent() {
                    Ok(Transcription::Impossible(public))
                } else {
                    Err(JobError::Transient(public))
                }
            }
        }
    }

    /// Queues the e-mail of the transcribe job `transcribe_id` (one per attempt).
    async fn enqueue_notify(
        &self,
        notify: &NotifyJob,
        transcribe_id: &JobId,
    ) -> Result<(), JobError> {
        let job = notify
            .to_job_after(transcribe_id)
            .map_err(|e| JobError::Permanent(format!("cannot build the notify job: {e}")))?;
        let enqueued = self
            .queue
            .enqueue_job(&self.notify_queue, job)
            .await
            .map_err(|e| JobError::Transient(format!("cannot enqueue the notify job: {e}")))?;
        if enqueued.duplicate {
            tracing::info!(job_id = %enqueued.id, "notify job already pending");
        } else {
            telemetry::enqueued(&self.notify_queue);
        }
        Ok(())
    }
}

#[async_trait]
impl JobHandler for TranscribeHandler {
    type Job = TranscribeJob;

    async fn perform(&self, job: TranscribeJob, envelope: &Envelope) -> Result<(), JobError> {
        let id = job.transcription_id;
        if self.report(id, &ResultReport::Processing).await? == Reported::NoRecord {
            tracing::info!(%id, "no record of this transcription: job acknowledged as obsolete");
            return Ok(());
        }
        let (report, notify) = match self.transcribe(&job).await? {
            Transcription::Text(transcript) => (
                ResultReport::Completed {
                    transcript: transcript.clone(),
                },
                NotifyJob {
                    transcription_id: id,
                    email: job.email.clone(),
                    transcript,
                    status: NotifyStatus::Completed,
                },
            ),
            Transcription::Impossible(reason) => {
                tracing::warn!(%id, %reason, "transcription failed for good");
                (ResultReport::Failed { error: reason }, failed_notice(&job))
            }
        };
        if self.report(id, &report).await? == Reported::NoRecord {
            tracing::info!(%id, "the record went away during the job: acknowledged as obsolete");
            return Ok(());
        }
        self.enqueue_notify(&notify, &envelope.id).await
    }

    async fn on_dead(&self, job: TranscribeJob, envelope: &Envelope, error: &JobError) {
        // Permanent errors here mean a transcription the API does not know (or refused the
        // report of): nobody to tell.
        if matches!(error, JobError::Permanent(_)) {
            return;
        }
        let reason = format!("gave up after repeated failures: {}", owner_text(error));
        if let Err(err) = self
            .report(
                job.transcription_id,
                &ResultReport::Failed { error: reason },
            )
            .await
        {
            tracing::warn!(error = %err, "could not report the dead job as failed");
        }
        if let Err(err) = self
            .enqueue_notify(&failed_notice(&job), &envelope.id)
            .await
        {
            tracing::warn!(error = %err, "could not notify the user about the dead job");
        }
    }
}

/// What the owner of a transcription reads about the last failure of a dead job: the download
/// and engine texts, which are generic already (a fixed text and a reason class); for anything
/// else (reports to the API, the token, the scratch directory, the notify queue, the job's own
/// deadline) one fixed text with a class, never the error itself, which can name internal hosts,
/// paths or commands. The error stays in the dead list and the logs.
pub(crate) fn owner_text(error: &JobError) -> String {
    let text = match error {
        JobError::Transient(text) | JobError::Permanent(text) => text.as_str(),
    };
    let is_generic = |prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix(" ("))
            .and_then(|rest| rest.strip_suffix(')'))
            .is_some_and(|class| class.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    };
    if is_generic(DOWNLOAD_FAILED) || is_generic(ENGINE_FAILED) {
        return text.to_owned();
    }
    if text.starts_with(JOB_TIMED_OUT) {
        return format!("{NOT_COMPLETED} (timeout)");
    }
    format!("{NOT_COMPLETED} (internal)")
}

/// How the owner-facing text of a failure outside the download and the engine begins.
const NOT_COMPLETED: &str = "the transcription could not be completed";

fn failed_notice(job: &TranscribeJob) -> NotifyJob {
    NotifyJob {
        transcription_id: job.transcription_id,
        email: job.email.clone(),
        transcript: String::new(),
        status: NotifyStatus::Failed,
    }
}

fn api_error(err: ApiError) -> JobError {
    if err.is_permanent() {
        JobError::Permanent(err.to_string())
    } else {
        JobError::Transient(err.to_string())
    }
}

/// A downloaded audio file, removed when dropped.
struct ScratchFile(PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::DownloadError;
    use crate::engine::EngineError;

    /// Whatever a job's last error says, the owner reads one of the fixed texts with a class.
    #[test]
    fn the_owner_never_reads_an_internal_error() {
        let download = DownloadError::Transport("connect to 10.0.0.7:5432: refused".into());
        let engine = EngineError::Failed {
            status: "exit status: 1".into(),
            stderr: "/opt/models/secret.bin: permission denied".into(),
        };
        let cases = [
            (
                JobError::Transient(download.public_message()),
                "the audio could not be downloaded (unreachable)",
            ),
            (
                JobError::Transient(engine.public_message()),
                "the audio could not be transcribed (engine_failed)",
            ),
            (
                JobError::Transient("job timed out after 900 s (JOB_TIMEOUT_SECS)".into()),
                "the transcription could not be completed (timeout)",
            ),
            (
                JobError::Transient("cannot create /var/lib/worker/scratch: denied".into()),
                "the transcription could not be completed (internal)",
            ),
            (
                JobError::Transient("transcription-api answered 502 from 10.1.2.3".into()),
                "the transcription could not be completed (internal)",
            ),
            // A text that only starts like a generic one is not trusted.
            (
                JobError::Transient(
                    "the audio could not be downloaded (x): connect 10.0.0.7".into(),
                ),
                "the transcription could not be completed (internal)",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(owner_text(&error), expected, "{error:?}");
        }
    }
}
