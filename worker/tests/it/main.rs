//! Integration tests of the worker crate, one binary. Fixtures: a SQLite queue per test (and
//! Redis when reachable), the real auth server and transcription-api in-process
//! (`platform.rs`), a local axum server as the audio host, and an SMTP sink (plain, STARTTLS or
//! implicit TLS). Stand-ins remain only where a test needs a server that misbehaves (stalls,
//! refuses, lacks a route) and say so.

// Test code: a failed expectation should panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod attempts;
mod cli;
mod cli_output;
mod dead_job;
mod deadlines;
mod download;
mod engine;
mod fault;
mod heartbeat;
mod helpers;
mod metrics_endpoint;
mod notifier;
mod notifier_failures;
mod platform;
mod redis;
mod signals;
mod smtp_tls;
mod transcriber;
mod upgrade;
mod worker_loop;
