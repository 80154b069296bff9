//! Reliable job queues for the transcription platform (docs/architecture.md, "Job flow").
//!
//! * [`envelope`]: the versioned job envelope and its HMAC-SHA-256 seal ([`SigningKey`]).
//! * [`ReliableQueue`]: the contract (reserve / ack / fail with backoff / dead list / reaper).
//! * [`RedisQueue`]: production backend on Redis lists (`BLMOVE` into per-worker lists).
//! * [`SqliteQueue`]: embedded durable backend for the one-process mode.
//! * [`jobs`]: the platform's job payloads; [`connect`] opens the configured backend, [`inspect`]
//!   the operator's read-and-clear view of it without the signing key.
//!
//! Both backends pass the same conformance suite (`tests/conformance`).

mod connect;
pub mod envelope;
mod error;
pub mod jobs;
mod queue;
mod redis_queue;
mod sqlite_queue;

pub use connect::{QueueInspector, connect, inspect};
pub use envelope::{ENVELOPE_VERSION, Envelope, EnvelopeError, JobId, MAX_JOB_BYTES, SigningKey};
pub use error::QueueError;
pub use queue::{
    DeadJob, Enqueued, FailOutcome, NewJob, QueueConfig, QueueStats, ReliableQueue, Reserved,
};
pub use redis_queue::RedisQueue;
pub use sqlite_queue::SqliteQueue;
