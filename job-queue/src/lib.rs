//! Reliable job queues for the transcription platform (docs/architecture.md, "Job flow"),
//! generic over what the jobs are: an envelope carries a kind and a JSON payload. The
//! platform's job payloads are defined elsewhere (the `contracts` crate) as [`Job`] types.
//!
//! * [`envelope`]: the versioned job envelope and its HMAC-SHA-256 seal ([`SigningKey`]).
//! * [`ReliableQueue`]: the contract (reserve / ack / fail with backoff / dead list / reaper).
//! * [`RedisQueue`]: production backend on Redis lists (`BLMOVE` into per-worker lists).
//! * [`SqliteQueue`]: embedded durable backend for the one-process mode.
//! * [`Job`]: typed jobs ([`NewJob::typed`] to enqueue one, [`Envelope::decode`] to read it
//!   back); [`connect`] opens the configured backend, [`inspect`] the operator's
//!   read-and-clear view of it without the signing key.
//!
//! Both backends pass the same conformance suite (`tests/conformance`).

mod connect;
pub mod envelope;
mod error;
mod job;
mod queue;
mod redis_queue;
mod sqlite_queue;

pub use connect::{QueueInspector, connect, inspect};
pub use envelope::{ENVELOPE_VERSION, Envelope, EnvelopeError, JobId, MAX_JOB_BYTES, SigningKey};
pub use error::QueueError;
pub use job::{Job, PayloadError};
pub use queue::{
    DeadJob, Enqueued, FailOutcome, NewJob, QueueConfig, QueueStats, ReliableQueue, Reserved,
};
pub use redis_queue::RedisQueue;
pub use sqlite_queue::SqliteQueue;
