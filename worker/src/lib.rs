//! Queue workers of the transcription platform (docs/architecture.md, "Job flow").
//!
//! * [`Transcriber`]: consumes `transcribe` jobs, downloads audio safely ([`download`]), runs
//!   an [`Engine`](engine::Engine), reports to transcription-api ([`api`]) and enqueues
//!   `notify` jobs.
//! * [`Notifier`]: consumes `notify` jobs and sends e-mail over SMTP or to an outbox folder.
//! * [`runner`]: the loop both share (N slots, heartbeat, reaper, graceful shutdown), feeding
//!   a typed [`JobHandler`] per job type.
//!
//! The jobs, reports and token response are the `contracts` crate's types.
//! * [`cli`]: the `worker` binary's commands, including `worker queue …` for operators.
//!
//! Both roles are plain library types that take an `Arc<dyn ReliableQueue>` and a shutdown
//! future, so one process can run them next to the HTTP services.

pub mod api;
pub mod cli;
pub mod config;
pub mod download;
pub mod engine;
pub mod notifier;
pub mod runner;
pub mod telemetry;
pub mod transcriber;

pub use notifier::{Notifier, NotifierConfig};
pub use runner::{JobError, JobHandler, RunConfig, RunError, RunSummary, WorkerLoop};
pub use transcriber::{EngineConfig, Transcriber, TranscriberConfig};
