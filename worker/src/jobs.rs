//! The job payloads the worker consumes and produces, with the default queue names and job
//! kinds: defined in [`job_queue::jobs`], the contract shared with transcription-api.

pub use job_queue::jobs::*;
