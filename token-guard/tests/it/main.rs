//! Black-box tests of token-guard: the real auth server in-process (SQLite in a temp dir,
//! port 0) issues and publishes keys; a small axum app protected by the guard answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;
mod keys;
mod malformed;
mod one_rule_set;
mod revocation;
mod tamper;
