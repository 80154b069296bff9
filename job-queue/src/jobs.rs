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
    /// The job to enqueue, with the transcription id as job id (so enqueueing the same
    /// transcription twice is suppressed by the queue).
    pub fn to_job(&self) -> Result<NewJob, EnvelopeError> {
        Ok(NewJob::new(TRANSCRIBE_KIND, self.payload()?)
            .with_id(JobId::new(self.transcription_id.to_string())?))
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

    /// The job to enqueue, with [`job_id`](Self::job_id) as its id.
    pub fn to_job(&self) -> Result<NewJob, EnvelopeError> {
        let payload = serde_json::to_value(self).map_err(EnvelopeError::Encode)?;
        Ok(NewJob::new(NOTIFY_KIND, payload).with_id(self.job_id()?))
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
}
