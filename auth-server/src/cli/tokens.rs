//! `auth-server tokens revoke --jti J | --client ID | --user ID`.

use std::time::Duration;

use clap::{Args, Subcommand};
use time::OffsetDateTime;

use super::{CliError, Output, connect};
use crate::config::{CommonArgs, parse_duration};
use crate::revocation::DenyList;
use crate::store::FamilyOwner;

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Revoke an access token by `jti`, or every session of a client or a user.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RevokeArgs {
    /// An access token's `jti`: denied until it would have expired.
    #[arg(long)]
    jti: Option<String>,
    /// Revoke all refresh-token families of this client.
    #[arg(long)]
    client: Option<String>,
    /// Revoke all refresh-token families of this user.
    #[arg(long)]
    user: Option<String>,
    /// Longest access-token lifetime in use, so a denied `jti` outlives its token.
    #[arg(long, env = "ACCESS_TOKEN_TTL", default_value = "900", value_parser = parse_duration)]
    access_token_ttl: Duration,
}

/// Leeway resource servers allow on `exp`.
const LEEWAY: Duration = Duration::from_secs(60);

pub async fn run(cmd: TokensCommand, common: &CommonArgs, out: &Output) -> Result<(), CliError> {
    let store = connect(common).await?;
    let TokensCommand::Revoke(args) = cmd;
    let now = OffsetDateTime::now_utc();
    if let Some(jti) = args.jti {
        let until = now + args.access_token_ttl + LEEWAY;
        let deny_list = match &common.redis_url {
            Some(url) => DenyList::with_redis(store.clone(), url, &common.queue_prefix).await?,
            None => DenyList::store_only(store.clone()),
        };
        deny_list
            .deny(&jti, until.unix_timestamp(), now.unix_timestamp())
            .await?;
        out.print(&serde_json::json!({"revoked_jti": jti}), || {
            format!("access token {jti} revoked")
        });
        return Ok(());
    }
    let (owner, label) = match (&args.client, &args.user) {
        (Some(client), _) => (FamilyOwner::Client(client), format!("client {client}")),
        (None, Some(user)) => (FamilyOwner::User(user), format!("user {user}")),
        (None, None) => {
            return Err(CliError::Invalid(
                "give --jti, --client or --user".to_owned(),
            ));
        }
    };
    let revoked = store.revoke_refresh_families(owner, now).await?;
    out.print(&serde_json::json!({"revoked_sessions": revoked}), || {
        format!("{revoked} session(s) of {label} revoked")
    });
    Ok(())
}
