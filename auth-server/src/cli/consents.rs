//! `auth-server consents revoke`: withdraw what a user allowed a client (or every client) and
//! end the sessions it allowed. Listing is `auth-server users consents`.

use clap::Subcommand;

use super::{CliError, DEFAULT_ACCESS_TOKEN_TTL, Output, open_admin};
use crate::config::CommonArgs;

#[derive(Debug, Subcommand)]
pub enum ConsentsCommand {
    /// Withdraw a user's consent to one client (or to every client) and end the user's
    /// sessions there with their access tokens; the consent page asks again.
    Revoke {
        /// The user, by id or e-mail.
        #[arg(long)]
        user: String,
        /// The client; every client when left out.
        #[arg(long)]
        client: Option<String>,
    },
}

pub async fn run(cmd: ConsentsCommand, common: &CommonArgs, out: &Output) -> Result<(), CliError> {
    match cmd {
        ConsentsCommand::Revoke { user, client } => {
            // Only jtis are denied, each until its own `exp`: no cutoff, so the TTL is unused.
            let (user, revoked) = open_admin(common, DEFAULT_ACCESS_TOKEN_TTL)
                .await?
                .revoke_consents(&user, client.as_deref())
                .await?;
            let whom = client.as_deref().unwrap_or("every client");
            out.print(
                &serde_json::json!({
                    "user_id": user.id,
                    "client_id": client,
                    "revoked_consents": revoked.consents,
                    "revoked_sessions": revoked.sessions,
                }),
                || {
                    format!(
                        "{} consent(s) of {} to {whom} withdrawn; {} session(s) ended",
                        revoked.consents, user.email, revoked.sessions
                    )
                },
            );
        }
    }
    Ok(())
}
