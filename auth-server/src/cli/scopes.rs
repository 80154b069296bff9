//! `auth-server scopes create|list|delete`.

use clap::Subcommand;
use time::OffsetDateTime;

use super::{CliError, Output, connect};
use crate::config::CommonArgs;
use crate::grants::scope::is_scope_token;
use crate::store::Scope;

/// Longest accepted scope name.
const MAX_SCOPE_LEN: usize = 128;

#[derive(Debug, Subcommand)]
pub enum ScopesCommand {
    /// Register a scope.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List scopes.
    List,
    /// Delete a scope that no client is allowed any more.
    Delete { name: String },
}

pub async fn run(cmd: ScopesCommand, common: &CommonArgs, out: &Output) -> Result<(), CliError> {
    let store = connect(common).await?;
    match cmd {
        ScopesCommand::Create { name, description } => {
            if !is_scope_token(&name) || name.len() > MAX_SCOPE_LEN {
                return Err(CliError::Invalid(format!(
                    "invalid scope name `{name}`: use 1–{MAX_SCOPE_LEN} printable ASCII characters without spaces, quotes or backslashes"
                )));
            }
            let scope = Scope {
                name,
                description,
                created_at: OffsetDateTime::now_utc(),
            };
            store.create_scope(&scope).await?;
            out.print(&scope, || format!("scope {} created", scope.name));
        }
        ScopesCommand::List => {
            let scopes = store.list_scopes().await?;
            out.print(&scopes, || {
                scopes
                    .iter()
                    .map(|s| {
                        if s.description.is_empty() {
                            s.name.clone()
                        } else {
                            format!("{}\t{}", s.name, s.description)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ScopesCommand::Delete { name } => {
            if !store.delete_scope(&name).await? {
                return Err(CliError::NotFound(format!("no scope named `{name}`")));
            }
            out.print(&serde_json::json!({"deleted": name}), || {
                format!("scope {name} deleted")
            });
        }
    }
    Ok(())
}
