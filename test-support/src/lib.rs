//! What the tests of every crate share (a dev-dependency only), each piece once:
//!
//! * [`ci`]: the one rule for "are we in CI", and [`ci::skip_unless_ci`], which applies it to a
//!   test whose server is unreachable: outside CI it prints `skipping: …` and passes, in CI it
//!   fails, so a missing PostgreSQL or Redis can never turn a CI run green by skipping;
//! * [`db`]: [`db::TestDb`], a fresh SQLite file or PostgreSQL database per test;
//! * [`redis`]: the Redis probe and the clean-up of a test's key prefix;
//! * [`smtp`]: the SMTP sink, a small real SMTP server that keeps what it accepted;
//! * [`process`]: a binary run as an operator runs it (start, log lines, signals, exit) and a
//!   request held in flight;
//! * [`cli`]: assertions on what a binary prints when run once (one error line, `--help`);
//! * [`net`]: a port nothing listens on and a TCP proxy the test cuts or stalls;
//! * [`readme`]: the README's flag tables checked against the binaries' `clap` commands;
//! * [`rp`]: a stock OpenID Connect relying party (Python authlib) run against the auth server;
//! * [`auth`] (feature `auth-server`): a real auth server in-process for the crates around it;
//! * [`browser`] (feature `browser`): a headless chromium driven over WebDriver.

// Test code: a failed expectation panics with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "auth-server")]
pub mod auth;
#[cfg(feature = "browser")]
pub mod browser;
pub mod ci;
pub mod cli;
pub mod db;
pub mod net;
pub mod process;
pub mod readme;
pub mod redis;
pub mod rp;
pub mod smtp;
