//! Typed jobs: a payload type that knows its name on the queue, so producers enqueue values
//! ([`NewJob::typed`]) and consumers get values back ([`Envelope::decode`]), never JSON by hand.
//!
//! The queue itself stays generic: an envelope carries a `kind` string and a JSON payload. A
//! [`Job`] ties one payload type to one kind ([`Job::JOB_NAME`]) and to the queue its jobs go
//! to unless the deployment names another ([`Job::QUEUE`]). The payload is the type's serde
//! JSON form, so a type keeps its wire form as long as its serde attributes do.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::{Envelope, EnvelopeError};
use crate::queue::NewJob;

/// A job type: `Self` is the payload (its JSON form is the envelope's `payload`).
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The envelope `kind` of this job type: written on enqueue, checked on
    /// [`decode`](Envelope::decode); workers dispatch on it. Part of the wire format: jobs
    /// already queued keep the name they were queued with.
    const JOB_NAME: &'static str;

    /// The default name of the queue jobs of this type go to (a queue name: 1–64 characters of
    /// `[A-Za-z0-9_.-]`).
    const QUEUE: &'static str;
}

/// Why an envelope is not a job of the type asked for. Either way retrying cannot help.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The envelope's `kind` is another job type's.
    #[error("unexpected job kind `{found}` (expected `{expected}`)")]
    UnexpectedKind {
        /// [`Job::JOB_NAME`] of the type asked for.
        expected: &'static str,
        /// The envelope's kind.
        found: String,
    },
    /// The kind matches but the payload does not parse as the type.
    #[error("bad {kind} payload: {source}")]
    Malformed {
        /// [`Job::JOB_NAME`] of the type asked for.
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl NewJob {
    /// A job of type `J` with a generated id: kind [`J::JOB_NAME`](Job::JOB_NAME), payload
    /// `job`'s JSON form. Set a caller-given id with [`with_id`](Self::with_id).
    pub fn typed<J: Job>(job: &J) -> Result<NewJob, EnvelopeError> {
        let payload = serde_json::to_value(job).map_err(EnvelopeError::Encode)?;
        Ok(NewJob::new(J::JOB_NAME, payload))
    }
}

impl Envelope {
    /// The payload as a `J`, once the envelope's kind is [`J::JOB_NAME`](Job::JOB_NAME).
    pub fn decode<J: Job>(&self) -> Result<J, PayloadError> {
        if self.kind != J::JOB_NAME {
            return Err(PayloadError::UnexpectedKind {
                expected: J::JOB_NAME,
                found: self.kind.clone(),
            });
        }
        J::deserialize(&self.payload).map_err(|source| PayloadError::Malformed {
            kind: J::JOB_NAME,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::envelope::JobId;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }

    impl Job for Ping {
        const JOB_NAME: &'static str = "ping";
        const QUEUE: &'static str = "pings";
    }

    #[test]
    fn a_typed_job_round_trips_through_its_envelope() {
        let new = NewJob::typed(&Ping { n: 7 }).unwrap();
        assert_eq!(new.kind, "ping");
        assert_eq!(new.payload, serde_json::json!({"n": 7}));
        assert!(new.id.is_none());
        let envelope = Envelope::new(JobId::random(), new.kind, new.payload);
        assert_eq!(envelope.decode::<Ping>().unwrap(), Ping { n: 7 });
    }

    #[test]
    fn another_kind_or_a_bad_payload_is_refused_with_a_reason() {
        let other = Envelope::new(JobId::random(), "pong", serde_json::json!({"n": 7}));
        let err = other.decode::<Ping>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unexpected job kind `pong` (expected `ping`)"
        );
        let bad = Envelope::new(JobId::random(), "ping", serde_json::json!({"n": "x"}));
        let err = bad.decode::<Ping>().unwrap_err();
        assert!(err.to_string().starts_with("bad ping payload: "), "{err}");
    }
}
