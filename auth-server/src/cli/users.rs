//! `auth-server users create|list|show|set-permissions|set-profile|consents|reset-password|
//! disable|enable|delete`.
//! Passwords are read from stdin (first line) or, on a terminal, from a prompt; never argv.

use std::io::{BufRead, IsTerminal};

use clap::{ArgGroup, Subcommand};
use secrecy::SecretString;
use serde::Serialize;
use time::OffsetDateTime;

use super::{AccessTokenTtl, CliError, DEFAULT_ACCESS_TOKEN_TTL, Output, open_admin, split_list};
use crate::admin::{NewUser, ProfileUpdate};
use crate::config::CommonArgs;
use crate::model::User;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Register a user; the password is read from stdin or a prompt.
    Create {
        #[arg(long)]
        email: String,
        /// Scopes the user's tokens may carry, space-separated.
        #[arg(long, default_value = "")]
        permissions: String,
        /// The display name (the OpenID Connect `name` claim).
        #[arg(long)]
        name: Option<String>,
        /// Release the e-mail as verified (`email_verified`): you checked it.
        #[arg(long)]
        email_verified: bool,
    },
    /// List users.
    List,
    /// Show one user (by id or e-mail).
    Show { user: String },
    /// Replace a user's permissions.
    SetPermissions { user: String, permissions: String },
    /// Change a user's display name or whether their e-mail is verified.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)))]
    SetProfile {
        user: String,
        /// The new display name (the OpenID Connect `name` claim).
        #[arg(long, group = "change", conflicts_with = "no_name")]
        name: Option<String>,
        /// Remove the display name.
        #[arg(long, group = "change")]
        no_name: bool,
        /// Whether the e-mail is released as verified.
        #[arg(long, group = "change", value_name = "true|false")]
        email_verified: Option<bool>,
    },
    /// List what the user allowed which clients (client, scope, granted_at).
    Consents { user: String },
    /// Set a new password (from stdin or a prompt) and end the user's sessions and access
    /// tokens.
    ResetPassword {
        user: String,
        #[command(flatten)]
        access_token_ttl: AccessTokenTtl,
    },
    /// Refuse the user's logins and end their sessions and access tokens.
    Disable {
        user: String,
        #[command(flatten)]
        access_token_ttl: AccessTokenTtl,
    },
    /// Accept the user's logins again.
    Enable { user: String },
    /// Delete the user, their sessions and access tokens.
    Delete {
        user: String,
        #[command(flatten)]
        access_token_ttl: AccessTokenTtl,
    },
}

pub async fn run(cmd: UsersCommand, common: &CommonArgs, out: &Output) -> Result<(), CliError> {
    let ttl = match &cmd {
        UsersCommand::ResetPassword {
            access_token_ttl, ..
        }
        | UsersCommand::Disable {
            access_token_ttl, ..
        }
        | UsersCommand::Delete {
            access_token_ttl, ..
        } => access_token_ttl.value,
        _ => DEFAULT_ACCESS_TOKEN_TTL,
    };
    let admin = open_admin(common, ttl).await?;
    match cmd {
        UsersCommand::Create {
            email,
            permissions,
            name,
            email_verified,
        } => {
            // The e-mail is checked before the password is asked for.
            let mut new = NewUser::new(&email, split_list(&permissions))?;
            new.display_name = name;
            new.email_verified = email_verified;
            let password = read_new_password()?;
            let user = admin.register_user(new, password).await?;
            out.print(&user, || {
                format!("user {} created: {}", user.email, user.id)
            });
        }
        UsersCommand::List => {
            let users = admin.list_users().await?;
            out.print(&users, || {
                users.iter().map(summary).collect::<Vec<_>>().join("\n")
            });
        }
        UsersCommand::Show { user } => {
            let user = admin.user(&user).await?;
            out.print(&user, || {
                format!(
                    "id: {}\nemail: {}\nemail_verified: {}\ndisplay_name: {}\npermissions: {}\n\
                     disabled: {}\ncreated_at: {}",
                    user.id,
                    user.email,
                    user.email_verified,
                    user.display_name.as_deref().unwrap_or(""),
                    permission_list(&user),
                    user.disabled,
                    plumbing::rfc3339(user.created_at)
                )
            });
        }
        UsersCommand::SetProfile {
            user,
            name,
            no_name,
            email_verified,
        } => {
            let update = ProfileUpdate {
                display_name: if no_name { Some(None) } else { name.map(Some) },
                email_verified,
            };
            let user = admin.set_user_profile(&user, update).await?;
            out.print(&user, || {
                format!(
                    "profile of {}: display_name: {}; email_verified: {}",
                    user.email,
                    user.display_name.as_deref().unwrap_or(""),
                    user.email_verified
                )
            });
        }
        UsersCommand::Consents { user } => {
            let consents = admin.user_consents(&user).await?;
            let clients = admin.list_clients().await?;
            let listed: Vec<ListedConsent> = consents
                .iter()
                .map(|consent| ListedConsent {
                    client_id: &consent.client_id,
                    client_name: clients
                        .iter()
                        .find(|client| client.id == consent.client_id)
                        .map_or("", |client| client.name.as_str()),
                    scope: consent.scopes.iter().cloned().collect::<Vec<_>>().join(" "),
                    granted_at: consent.granted_at,
                })
                .collect();
            out.print(&listed, || {
                listed
                    .iter()
                    .map(|c| {
                        format!(
                            "{}\t{}\t{}\t{}",
                            c.client_id,
                            c.client_name,
                            c.scope,
                            plumbing::rfc3339(c.granted_at)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        UsersCommand::SetPermissions { user, permissions } => {
            let user = admin
                .set_user_permissions(&user, split_list(&permissions))
                .await?;
            let list = permission_list(&user);
            out.print(
                &serde_json::json!({"id": user.id, "permissions": user.permissions}),
                || format!("permissions of {}: {list}", user.email),
            );
        }
        UsersCommand::ResetPassword { user, .. } => {
            // Named before the password is asked for: a typo is not prompted for.
            let user = admin.user(&user).await?;
            let password = read_new_password()?;
            let (user, revoked) = admin.reset_password(&user.id, password).await?;
            let revoked = revoked.sessions;
            out.print(
                &serde_json::json!({"id": user.id, "revoked_sessions": revoked}),
                || {
                    format!(
                        "password of {} changed; {revoked} session(s) ended",
                        user.email
                    )
                },
            );
        }
        UsersCommand::Disable { user, .. } => {
            let (user, revoked) = admin.disable_user(&user).await?;
            let revoked = revoked.sessions;
            out.print(
                &serde_json::json!({"id": user.id, "disabled": true, "revoked_sessions": revoked}),
                || format!("user {} disabled; {revoked} session(s) ended", user.email),
            );
        }
        UsersCommand::Enable { user } => {
            let user = admin.enable_user(&user).await?;
            out.print(
                &serde_json::json!({"id": user.id, "disabled": false}),
                || format!("user {} enabled", user.email),
            );
        }
        UsersCommand::Delete { user, .. } => {
            let (user, _) = admin.delete_user(&user).await?;
            out.print(&serde_json::json!({"deleted": user.id}), || {
                format!("user {} deleted", user.email)
            });
        }
    }
    Ok(())
}

/// One line of `users consents`: a consent with its client's name.
#[derive(Serialize)]
struct ListedConsent<'a> {
    client_id: &'a str,
    client_name: &'a str,
    /// The scopes allowed, space-separated.
    scope: String,
    #[serde(with = "time::serde::rfc3339")]
    granted_at: OffsetDateTime,
}

/// Reads a new password: a prompt with confirmation on a terminal, else the first stdin line.
/// The policy is the admin layer's ([`Admin::register_user`](crate::admin::Admin::register_user)).
fn read_new_password() -> Result<SecretString, CliError> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        if first != second {
            return Err(CliError::Invalid("the passwords do not match".to_owned()));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        return Err(CliError::Invalid(
            "no password was given: pipe it as the first line of stdin, or run on a terminal to be asked"
                .to_owned(),
        ));
    }
    Ok(SecretString::from(password))
}

fn permission_list(user: &User) -> String {
    user.permissions
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

fn summary(user: &User) -> String {
    let state = if user.disabled { "disabled" } else { "enabled" };
    format!(
        "{}\t{}\t{}\t{}",
        user.id,
        user.email,
        state,
        permission_list(user)
    )
}
