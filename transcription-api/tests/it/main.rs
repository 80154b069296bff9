//! Black-box tests of transcription-api: the real server on 127.0.0.1:0 with a real auth
//! server, real tokens and a real queue.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod cli;
mod helpers;
mod idempotency;
mod input;
mod limits;
mod notification;
mod outages;
mod outbox;
mod proxy;
mod read;
mod report;
mod retry;
mod signals;
mod store;
mod submit;

/// `clap`'s own consistency checks, and the README's configuration table is exactly the flags
/// of `transcription-api serve` and `migrate` with their env fallbacks.
#[test]
fn the_cli_is_well_formed_and_matches_the_readme() {
    use clap::CommandFactory;
    transcription_api::config::Cli::command().debug_assert();
    let mut command = transcription_api::config::Cli::command();
    command.build();
    let commands = ["serve", "migrate"].map(|name| command.find_subcommand(name).unwrap());
    test_support::readme::assert_flag_table_matches(
        &["## transcription-api", "### Configuration"],
        &commands,
    );
}
