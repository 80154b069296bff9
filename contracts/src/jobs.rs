//! The job payloads of the transcription platform, as typed jobs of the reliable queue
//! ([`Job`]): [`TranscribeJob`] (transcription-api → the transcriber) and [`NotifyJob`] (the
//! transcriber → the notifier), with the rules that name their job ids.
//!
//! Wire format, fixed by the tests below: the job name is the envelope's `kind` (`transcribe`,
//! `notify`), the payload the type's JSON object, and the job ids are
//! * `<transcription id>` for the first attempt of a transcription, `<id>-attempt-<n>` for a
//!   retry ([`attempt_key`]);
//! * `notify-<transcribe job id>` for the notify job that follows a transcribe job.
//!
//! Jobs queued by an earlier version in this form are read by this one.

use job_queue::{EnvelopeError, Job, JobId, NewJob};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

/// Payload of a `transcribe` job: `{"transcription_id", "audio_url", "email"}`. Queued by
/// transcription-api (through its outbox), consumed by the transcriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscribeJob {
    /// The record at transcription-api the worker reports on.
    pub transcription_id: Uuid,
    /// Absolute http(s) URL of the audio file.
    pub audio_url: String,
    /// Where the notifier writes when the transcription is done.
    pub email: String,
}

impl Job for TranscribeJob {
    const JOB_NAME: &'static str = "transcribe";
    const QUEUE: &'static str = "transcribe";
}

impl TranscribeJob {
    /// The job of the first attempt, with the transcription id as job id (so enqueueing the
    /// same transcription twice is suppressed by the queue).
    pub fn to_job(&self) -> Result<NewJob, EnvelopeError> {
        self.to_attempt_job(FIRST_ATTEMPT)
    }

    /// The job of attempt `attempt`, with its [`attempt_key`] as job id.
    pub fn to_attempt_job(&self, attempt: u32) -> Result<NewJob, EnvelopeError> {
        Ok(NewJob::typed(self)?.with_id(JobId::new(attempt_key(self.transcription_id, attempt))?))
    }
}

/// How a transcription ended, as told to the user: `completed` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyStatus {
    Completed,
    Failed,
}

/// Payload of a `notify` job: `{"transcription_id", "email", "transcript", "status"}`. Queued by
/// the transcriber, consumed by the notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyJob {
    /// The transcription the e-mail is about (and the notifier reports on).
    pub transcription_id: Uuid,
    /// The recipient.
    pub email: String,
    /// The transcript; empty when the transcription failed.
    pub transcript: String,
    pub status: NotifyStatus,
}

impl Job for NotifyJob {
    const JOB_NAME: &'static str = "notify";
    const QUEUE: &'static str = "notify";
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
        Ok(NewJob::typed(self)?.with_id(JobId::new(format!("notify-{}", transcribe_id.as_str()))?))
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
    use job_queue::{Envelope, SigningKey};
    use serde_json::json;

    use super::*;

    #[test]
    fn job_names_and_queues_are_the_contract() {
        assert_eq!(TranscribeJob::JOB_NAME, "transcribe");
        assert_eq!(TranscribeJob::QUEUE, "transcribe");
        assert_eq!(NotifyJob::JOB_NAME, "notify");
        assert_eq!(NotifyJob::QUEUE, "notify");
    }

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
            json!({"transcription_id": id.to_string(), "email": "a@example.com",
                   "transcript": "hello", "status": "completed"})
        );
    }

    #[test]
    fn transcribe_payload_parses() {
        let id = Uuid::new_v4();
        let value = json!({"transcription_id": id, "audio_url": "https://x.test/a.mp3",
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

    /// The key the stored jobs below were signed with.
    const KEY: &[u8] = b"contracts-wire-test-signing-key-0123456789";
    const ID: &str = "0190d5e4-7c1a-7b2e-9f3d-2a6b8c4e1f07";

    /// Jobs exactly as earlier versions stored them (in a Redis list or the embedded queue's
    /// table), signed with [`KEY`] outside this code (Python's `hmac`): a first
    /// transcribe job, a retry's transcribe job after one failed delivery, and their notify
    /// jobs.
    const STORED: [&str; 4] = [
        r#"{"envelope":{"v":1,"id":"0190d5e4-7c1a-7b2e-9f3d-2a6b8c4e1f07","kind":"transcribe","attempt":0,"enqueued_at":1700000000000,"payload":{"audio_url":"https://cdn.example.com/a.mp3","email":"a@example.com","transcription_id":"0190d5e4-7c1a-7b2e-9f3d-2a6b8c4e1f07"}},"sig":"v8Q2Si4jklg_hbFq_bgpgl10_RT2do2bj68jPtLzdnI"}"#,
        r#"{"envelope":{"v":1,"id":"0190d5e4-7c1a-7b2e-9f3d-2a6b8c4e1f07-attempt-2","kind":"transcribe","attempt":1,"enqueued_at":1700000000000,"payload":{"audio_url":"https://cdn.example.com/a.mp3","email":"a@example.com","transcription_id":"0190d5e4-7c1a-7b2e-9f3d-2a6b8c4e1f07"}},"sig":"S1GQ3r279HIkKhX6LCR3Ucs4Y0ZI10QBO4Md0Vh2XDk"}"#,
        r#"{"envelope":{"v":1,"id":"notify-0190d5e4-7c1a-7b2e-9f3d-2a6b8c4e1f07","kind":"notify","attempt":0,"enqueued_at":1700000000000,"payload":{"email":"a@example.com","status":"completed","transcript":"hello","transcription_id":"0190d5e4-7c1a-7b2e-9f3d-2a6b8c4e1f07"}},"sig":"mYljp9bmey71_NUKf4zZczKsxd6lXlcROT7drBXvNUI"}"#,
        r#"{"envelope":{"v":1,"id":"notify-0190d5e4-7c1a-7b2e-9f3d-2a6b8c4e1f07-attempt-2","kind":"notify","attempt":0,"enqueued_at":1700000000000,"payload":{"email":"a@example.com","status":"failed","transcript":"","transcription_id":"0190d5e4-7c1a-7b2e-9f3d-2a6b8c4e1f07"}},"sig":"19eMDJIgNnnndZcNyC6-Pa7bwQsmn4mq98SF_Y7K_kE"}"#,
    ];

    fn open(wire: &str) -> Envelope {
        SigningKey::new(KEY).unwrap().open(wire).unwrap()
    }

    /// The same job, sealed by this code with the stored job's id, attempt and time.
    fn reseal(stored: &Envelope, new: NewJob) -> String {
        assert_eq!(new.id.as_ref(), Some(&stored.id));
        let envelope = Envelope {
            id: stored.id.clone(),
            kind: new.kind,
            attempt: stored.attempt,
            enqueued_at: stored.enqueued_at,
            payload: new.payload,
            ..stored.clone()
        };
        SigningKey::new(KEY).unwrap().seal(&envelope).unwrap()
    }

    /// An upgrade keeps the jobs already queued: each stored job decodes into its type, and the
    /// same job written by this code is the stored one byte for byte.
    #[test]
    fn jobs_queued_by_earlier_versions_are_read_and_written_the_same() {
        let id = Uuid::parse_str(ID).unwrap();
        let transcribe = TranscribeJob {
            transcription_id: id,
            audio_url: "https://cdn.example.com/a.mp3".into(),
            email: "a@example.com".into(),
        };
        for (wire, attempt) in [(STORED[0], FIRST_ATTEMPT), (STORED[1], 2)] {
            let stored = open(wire);
            assert_eq!(stored.decode::<TranscribeJob>().unwrap(), transcribe);
            assert_eq!(
                reseal(&stored, transcribe.to_attempt_job(attempt).unwrap()),
                wire
            );
        }

        let completed = NotifyJob {
            transcription_id: id,
            email: "a@example.com".into(),
            transcript: "hello".into(),
            status: NotifyStatus::Completed,
        };
        let stored = open(STORED[2]);
        assert_eq!(stored.decode::<NotifyJob>().unwrap(), completed);
        assert_eq!(NotifyJob::delivery_key(&stored.id), ID);
        assert_eq!(reseal(&stored, completed.to_job().unwrap()), STORED[2]);

        let failed = NotifyJob {
            transcript: String::new(),
            status: NotifyStatus::Failed,
            ..completed
        };
        let stored = open(STORED[3]);
        assert_eq!(stored.decode::<NotifyJob>().unwrap(), failed);
        assert_eq!(
            NotifyJob::delivery_key(&stored.id),
            format!("{ID}-attempt-2")
        );
        let after_retry = JobId::new(attempt_key(id, 2)).unwrap();
        assert_eq!(
            reseal(&stored, failed.to_job_after(&after_retry).unwrap()),
            STORED[3]
        );

        // A job of one type is never read as the other.
        assert!(open(STORED[0]).decode::<NotifyJob>().is_err());
        assert!(open(STORED[2]).decode::<TranscribeJob>().is_err());
    }
}
