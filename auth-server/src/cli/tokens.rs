//! `auth-server tokens revoke --jti J | --client ID | --user ID`.

use clap::{Args, Subcommand};

use super::{AccessTokenTtl, CliError, Output, open_admin};
use crate::config::CommonArgs;

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Revoke an access token by `jti`, or every session and access token of a client or a user.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    target: RevokeTarget,
    #[command(flatten)]
    access_token_ttl: AccessTokenTtl,
}

/// Exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct RevokeTarget {
    /// An access token's `jti`: denied until it would have expired.
    #[arg(long)]
    jti: Option<String>,
    /// Revoke all refresh-token families of this client and its access tokens issued so far.
    #[arg(long)]
    client: Option<String>,
    /// Revoke all refresh-token families of this user and their access tokens issued so far.
    #[arg(long)]
    user: Option<String>,
}

pub async fn run(cmd: TokensCommand, common: &CommonArgs, out: &Output) -> Result<(), CliError> {
    let TokensCommand::Revoke(args) = cmd;
    let admin = open_admin(common, args.access_token_ttl.value).await?;
    let RevokeTarget { jti, client, user } = args.target;
    let (revoked, label) = match (jti, client, user) {
        (Some(jti), _, _) => {
            admin.revoke_access_token(&jti).await?;
            out.print(&serde_json::json!({"revoked_jti": jti}), || {
                format!("access token {jti} revoked")
            });
            return Ok(());
        }
        (None, Some(client), _) => (
            admin.revoke_client_tokens(&client).await?,
            format!("client {client}"),
        ),
        // An id or an e-mail, as for the `users` commands; the cutoff is on the id (`sub`).
        (None, None, Some(user)) => {
            let (user, revoked) = admin.revoke_user_tokens(&user).await?;
            (revoked, format!("user {}", user.email))
        }
        (None, None, None) => {
            return Err(CliError::Invalid(
                "give --jti, --client or --user".to_owned(),
            ));
        }
    };
    let sessions = revoked.sessions;
    // Tokens issued at or before this instant are refused.
    let not_before = plumbing::rfc3339_from_unix_ms(revoked.not_before_ms);
    out.print(
        &serde_json::json!({"revoked_sessions": sessions, "not_before": not_before}),
        || format!("{sessions} session(s) of {label} revoked, with their access tokens"),
    );
    Ok(())
}
