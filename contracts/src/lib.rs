//! What crosses a service boundary of the transcription platform, defined once and used by
//! both sides of it:
//!
//! * [`scopes`]: the scope names the auth server grants and transcription-api demands;
//! * [`token`]: the auth server's token response, read by the worker's token client;
//! * [`report`]: the worker's reports to transcription-api's internal routes;
//! * `jobs` (feature `jobs`): the payloads of the `transcribe` and `notify` jobs, as typed jobs
//!   of the reliable queue (`job_queue::Job`), with the rules that name their job ids.
//!
//! Their serde forms are the wire format: field names, tags and job names are fixed by the
//! tests here, which write the JSON out as literals. With the feature `openapi`, the HTTP
//! bodies derive their OpenAPI schema (utoipa) from these very types.

#[cfg(feature = "jobs")]
pub mod jobs;
pub mod report;
pub mod scopes;
pub mod token;
