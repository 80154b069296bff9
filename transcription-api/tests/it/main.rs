//! Black-box tests of transcription-api: the real server on 127.0.0.1:0 with a real auth
//! server, real tokens and a real queue.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod cli;
mod helpers;
mod input;
mod notification;
mod outbox;
mod read;
mod report;
mod retry;
mod store;
mod submit;

/// `clap`'s own consistency checks, and every flag of the README's configuration table is one
/// `transcription-api serve` takes.
#[test]
fn the_cli_is_well_formed_and_matches_the_readme() {
    use clap::CommandFactory;
    transcription_api::config::Cli::command().debug_assert();
    let mut command = transcription_api::config::Cli::command();
    command.build();
    let help = command
        .find_subcommand_mut("serve")
        .unwrap()
        .render_long_help()
        .to_string();
    auth_server::testing::assert_readme_flags_in_help(
        &["## transcription-api", "### Configuration"],
        &help,
    );
}
