//! The job payloads of the transcription platform, shared by their producers
//! (transcription-api, the transcriber) and consumers (the transcriber, the notifier), with the
//! default queue names and job kinds.

use crate::{EnvelopeError, JobId, NewJob};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Default name of the queue transcription-api feeds.
pub const TRANSCRIBE_QUEUE: &str = "transcribe";
/// Default name of the queue the transcriber feeds and the notifier consumes.
pub const NOTIFY_QUEUE: &str = "notify";
/// Job kind of a [`TranscribeJob`].
pub const TRANSCRIBE_KIND: &str = "transcribe";
/// Job kind of a [`NotifyJob`].
pub const NOTIFY_KIND: &str = "notify";

/// The attempt a transcription is on when it is submitted; each retry by its owner after it
/// failed is one more.
pub const FIRST_ATTEMPT: u32 = 1;

/// The id of the `transcribe` job of one attempt of a transcription: the transcription id for
/// the first attempt, `<id>-attempt-<n>` after that. Each attempt is a fresh job (the queue
/// suppresses duplicates of an id it still holds, dead ones included) and, through
/// [`NotifyJob::to_job_after`], gets its own notify job and e-mail.
pub fn attempt_key(transcription_id: Uuid, attempt: u32) -> String {
    if attempt == FIRST_ATTEMPT {
        transcription_id.to_string()
    } else {
        format!("{transcription_id}-attempt-{attempt}")
    }
}

/// Payload of a `transcribe` job: `{"transcription_id", "audio_url", "email"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscribeJob {
    pub transcription_id: Uuid,
    /// Absolute http(s) URL of the audio file.
    pub audio_url: String,
    /// Where the notifier writes when the transcription is done.
    pub email: String,
}

impl TranscribeJob {
    /// The job of the first attempt, with the transcription id as job id (so enqueueing the
    /// same transcription twice is suppressed by the queue).
    pub fn to_job(&self) -> Result<NewJob, EnvelopeError> {
        self.to_attempt_job(FIRST_ATTEMPT)
    }

    /// The job of attempt `attempt`, with its [`attempt_key`] as job id.
    pub fn to_attempt_job(&self, attempt: u32) -> Result<NewJob, EnvelopeError> {
        Ok(NewJob::new(TRANSCRIBE_KIND, self.payload()?)
            .with_id(JobId::new(attempt_key(self.transcription_id, attempt))?))
    }

    fn payload(&self) -> Result<serde_json::Value, EnvelopeError> {
        serde_json::to_value(self).map_err(EnvelopeError::Encode)
    }
}

/// How a transcription ended, as told to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyStatus {
    Completed,
    Failed,
}

/// Payload of a `notify` job: `{"transcription_id", "email", "transcript", "status"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyJob {
    pub transcription_id: Uuid,
    pub email: String,
    /// The transcript; empty when the transcription failed.
    pub transcript: String,
    pub status: NotifyStatus,
}

impl NotifyJob {
    /// `notify-<transcription_id>`: a second notify job for the same transcription is
    /// suppressed while the first is pending.
    pub fn job_id(&self) -> Result<JobId, EnvelopeError> {
        JobId::new(format!("notify-{}", self.transcription_id))
    }

    /// The job of a first attempt, with [`job_id`](Self::job_id) as its id.
    pub fn to_job(&self) -> Result<NewJob, EnvelopeError> {
        self.to_job_after(&JobId::new(self.transcription_id.to_string())?)
    }

    /// The notify job that follows the `transcribe` job `transcribe_id`: id
    /// `notify-<transcribe_id>`, so a redelivered transcribe job gives the same notify job and
    /// each attempt of a transcription ([`attempt_key`]) its own (`notify-<transcription_id>`
    /// for the first, as [`job_id`](Self::job_id)).
    pub fn to_job_after(&self, transcribe_id: &JobId) -> Result<NewJob, EnvelopeError> {
        let payload = serde_json::to_value(self).map_err(EnvelopeError::Encode)?;
        Ok(NewJob::new(NOTIFY_KIND, payload)
            .with_id(JobId::new(format!("notify-{}", transcribe_id.as_str()))?))
    }

    /// What names the e-mail of the notify job `job_id` (its "sent" marker, outbox file and
    /// Message-ID): the id without `notify-`, i.e. the attempt's [`attempt_key`].
    pub fn delivery_key(job_id: &JobId) -> &str {
        let id = job_id.as_str();
        id.strip_prefix("notify-").unwrap_or(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_payload_matches_the_contract() {
        let id = Uuid::new_v4();
        let job = NotifyJob {
            transcription_id: id,
            email: "a@example.com".into(),
            transcript: "hello".into(),
            status: NotifyStatus::Completed,
        };
        let new = job.to_job().unwrap();
        assert_eq!(new.id.unwrap().as_str(), format!("notify-{id}"));
        assert_eq!(new.kind, "notify");
        assert_eq!(
            new.payload,
            serde_json::json!({"transcription_id": id.to_string(), "email": "a@example.com",
                               "transcript": "hello", "status": "completed"})
        );
    }

    #[test]
    fn transcribe_payload_parses() {
        let id = Uuid::new_v4();
        let value = serde_json::json!({"transcription_id": id, "audio_url": "https://x.test/a.mp3",
                                       "email": "a@example.com"});
        let job: TranscribeJob = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(job.transcription_id, id);
        assert_eq!(job.to_job().unwrap().payload, value);
    }

    /// A retry is a fresh transcribe job whose notify job and e-mail are its own; the first
    /// attempt keeps the names it always had.
    #[test]
    fn every_attempt_has_its_own_jobs_and_e_mail() {
        let id = Uuid::new_v4();
        let job = TranscribeJob {
            transcription_id: id,
            audio_url: "https://x.test/a.mp3".into(),
            email: "a@example.com".into(),
        };
        let first = job.to_job().unwrap().id.unwrap();
        assert_eq!(first.as_str(), id.to_string());
        let second = job.to_attempt_job(2).unwrap().id.unwrap();
        assert_eq!(second.as_str(), format!("{id}-attempt-2"));
        let notify = NotifyJob {
            transcription_id: id,
            email: "a@example.com".into(),
            transcript: String::new(),
            status: NotifyStatus::Failed,
        };
        let after_first = notify.to_job_after(&first).unwrap().id.unwrap();
        assert_eq!(after_first, notify.job_id().unwrap());
        assert_eq!(NotifyJob::delivery_key(&after_first), id.to_string());
        let after_second = notify.to_job_after(&second).unwrap().id.unwrap();
        assert_eq!(after_second.as_str(), format!("notify-{id}-attempt-2"));
        assert_eq!(
            NotifyJob::delivery_key(&after_second),
            format!("{id}-attempt-2")
        );
    }
}
