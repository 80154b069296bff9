//! `auth-server tokens revoke --jti J | --client ID | --user ID`.

use clap::{Args, Subcommand};
use time::OffsetDateTime;

use super::{AccessTokenTtl, CliError, Output, connect, deny_list};
use crate::config::CommonArgs;
use crate::revocation::VERIFIER_LEEWAY;

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
    let store = connect(common).await?;
    let TokensCommand::Revoke(args) = cmd;
    let deny_list = deny_list(common, &store, &args.access_token_ttl).await?;
    let now = OffsetDateTime::now_utc();
    let RevokeTarget { jti, client, user } = args.target;
    if let Some(jti) = jti {
        let until = now + args.access_token_ttl.value + VERIFIER_LEEWAY;
        deny_list
            .deny(&jti, until.unix_timestamp(), now.unix_timestamp())
            .await?;
        out.print(&serde_json::json!({"revoked_jti": jti}), || {
            format!("access token {jti} revoked")
        });
        return Ok(());
    }
    let (revoked, label) = match (client, user) {
        (Some(client), _) => {
            // A typo must not "revoke" the tokens of a client nobody has.
            if store.find_client(&client).await?.is_none() {
                return Err(CliError::NotFound(format!("no client with id `{client}`")));
            }
            (
                deny_list.revoke_client(&client).await?,
                format!("client {client}"),
            )
        }
        (None, Some(user)) => {
            // An id or an e-mail, as for the `users` commands; the cutoff is on the id (`sub`).
            let user = super::users::find(store.as_ref(), &user).await?;
            (
                deny_list.revoke_user(&user.id).await?,
                format!("user {}", user.email),
            )
        }
        (None, None) => {
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
