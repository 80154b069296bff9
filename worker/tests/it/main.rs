//! Integration tests of the worker crate, one binary. Fixtures: a SQLite queue per test (and
//! Redis when reachable), a local axum server standing in for the audio host and the
//! transcription-api result endpoint, the real auth server in-process, and an SMTP sink.

// Test code: a failed expectation should panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod attempts;
mod cli;
mod cli_output;
mod deadlines;
mod download;
mod engine;
mod fault;
mod helpers;
mod metrics_endpoint;
mod notifier;
mod notifier_failures;
mod redis;
mod smtp_sink;
mod transcriber;
mod worker_loop;
