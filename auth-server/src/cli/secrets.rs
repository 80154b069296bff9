//! `auth-server secrets reencrypt`.

use clap::Subcommand;

use super::{CliError, Output, open_sealed_admin};
use crate::config::CommonArgs;

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt the signing keys and the pepper with the first secret of AUTH_SECRETS, so
    /// the others can be removed from the list.
    Reencrypt,
}

pub async fn run(cmd: SecretsCommand, common: &CommonArgs, out: &Output) -> Result<(), CliError> {
    let admin = open_sealed_admin(common).await?;
    match cmd {
        SecretsCommand::Reencrypt => {
            let outcome = admin.reencrypt().await?;
            out.print(&outcome, || {
                format!(
                    "re-encrypted {} with the first secret ({} already were)",
                    outcome.reencrypted, outcome.unchanged
                )
            });
        }
    }
    Ok(())
}
