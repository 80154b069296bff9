//! Black-box tests of the auth server: the real server on a random port, real HTTP, real
//! signatures, against SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_reach;
mod cli;
mod cli_output;
mod client_cutoff;
mod discovery;
mod hashing;
mod helpers;
mod hostile_input;
mod introspection;
mod keys;
mod lockout;
mod metrics;
mod pages;
mod password;
mod races;
mod reach;
mod refresh;
mod rp_conformance;
mod signals;
mod signin;
mod stateless;
mod store;
mod token;
