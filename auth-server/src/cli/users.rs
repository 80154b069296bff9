//! `auth-server users create|list|show|set-permissions|reset-password|disable|enable|delete`.
//! Passwords are read from stdin (first line) or, on a terminal, from a prompt; never argv.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal};

use clap::Subcommand;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AccessTokenTtl, CliError, Output, connect, deny_list, split_list};
use crate::config::CommonArgs;
use crate::passwords::{check_policy, hash_password};
use crate::store::{Store, User, normalize_username};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Register a user; the password is read from stdin or a prompt.
    Create {
        #[arg(long)]
        email: String,
        /// Scopes the user's tokens may carry, space-separated.
        #[arg(long, default_value = "")]
        permissions: String,
    },
    /// List users.
    List,
    /// Show one user (by id or e-mail).
    Show { user: String },
    /// Replace a user's permissions.
    SetPermissions { user: String, permissions: String },
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
    let store = connect(common).await?;
    match cmd {
        UsersCommand::Create { email, permissions } => {
            let email = email.trim().to_owned();
            // RFC 8265 UsernameCaseMapped: the form logins are compared in must exist.
            let normalized =
                normalize_username(&email).map_err(|err| CliError::Invalid(err.to_string()))?;
            if !is_email(&normalized) {
                return Err(CliError::Invalid(format!(
                    "`{email}` is not an e-mail address"
                )));
            }
            let password = read_new_password(&email)?;
            let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
                .await
                .map_err(|_| CliError::Invalid("password hashing was interrupted".to_owned()))??;
            let user = User {
                id: Uuid::new_v4().to_string(),
                email,
                password_hash,
                permissions: split_list(&permissions).map(str::to_owned).collect(),
                disabled: false,
                created_at: OffsetDateTime::now_utc(),
            };
            store.create_user(&user).await?;
            out.print(&user, || {
                format!("user {} created: {}", user.email, user.id)
            });
        }
        UsersCommand::List => {
            let users = store.list_users().await?;
            out.print(&users, || {
                users.iter().map(summary).collect::<Vec<_>>().join("\n")
            });
        }
        UsersCommand::Show { user } => {
            let user = find(store.as_ref(), &user).await?;
            out.print(&user, || {
                format!(
                    "id: {}\nemail: {}\npermissions: {}\ndisabled: {}\ncreated_at: {}",
                    user.id,
                    user.email,
                    permission_list(&user),
                    user.disabled,
                    plumbing::rfc3339(user.created_at)
                )
            });
        }
        UsersCommand::SetPermissions { user, permissions } => {
            let user = find(store.as_ref(), &user).await?;
            let permissions: BTreeSet<String> =
                split_list(&permissions).map(str::to_owned).collect();
            store.set_user_permissions(&user.id, &permissions).await?;
            let list = permissions.iter().cloned().collect::<Vec<_>>().join(" ");
            out.print(
                &serde_json::json!({"id": user.id, "permissions": permissions}),
                || format!("permissions of {}: {list}", user.email),
            );
        }
        UsersCommand::ResetPassword {
            user,
            access_token_ttl,
        } => {
            let user = find(store.as_ref(), &user).await?;
            let password = read_new_password(&user.email)?;
            let hash = tokio::task::spawn_blocking(move || hash_password(&password))
                .await
                .map_err(|_| CliError::Invalid("password hashing was interrupted".to_owned()))??;
            store.set_user_password_hash(&user.id, &hash).await?;
            let deny_list = deny_list(common, &store, &access_token_ttl).await?;
            let revoked = deny_list.revoke_user(&user.id).await?.sessions;
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
        UsersCommand::Disable {
            user,
            access_token_ttl,
        } => {
            let user = find(store.as_ref(), &user).await?;
            store.set_user_disabled(&user.id, true).await?;
            let deny_list = deny_list(common, &store, &access_token_ttl).await?;
            let revoked = deny_list.revoke_user(&user.id).await?.sessions;
            out.print(
                &serde_json::json!({"id": user.id, "disabled": true, "revoked_sessions": revoked}),
                || format!("user {} disabled; {revoked} session(s) ended", user.email),
            );
        }
        UsersCommand::Enable { user } => {
            let user = find(store.as_ref(), &user).await?;
            store.set_user_disabled(&user.id, false).await?;
            out.print(
                &serde_json::json!({"id": user.id, "disabled": false}),
                || format!("user {} enabled", user.email),
            );
        }
        UsersCommand::Delete {
            user,
            access_token_ttl,
        } => {
            let user = find(store.as_ref(), &user).await?;
            // Before the delete: it cascades to the families whose access tokens are denied.
            let deny_list = deny_list(common, &store, &access_token_ttl).await?;
            deny_list.revoke_user(&user.id).await?;
            store.delete_user(&user.id).await?;
            out.print(&serde_json::json!({"deleted": user.id}), || {
                format!("user {} deleted", user.email)
            });
        }
    }
    Ok(())
}

/// The user named by an id or an e-mail address (`NotFound` otherwise).
pub(super) async fn find(store: &dyn Store, id_or_email: &str) -> Result<User, CliError> {
    let found = if id_or_email.contains('@') {
        store.find_user_by_email(id_or_email).await?
    } else {
        store.find_user(id_or_email).await?
    };
    found.ok_or_else(|| CliError::NotFound(format!("no user `{id_or_email}`")))
}

/// Reads a new password: a prompt with confirmation on a terminal, else the first stdin line.
fn read_new_password(email: &str) -> Result<String, CliError> {
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
    check_policy(&password, email)?;
    Ok(password)
}

/// A pragmatic syntax check: one `@`, a non-empty local part, a dotted domain, no spaces. (The
/// 254-byte limit applies to the RFC 8265 form: [`normalize_username`].)
pub fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
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
