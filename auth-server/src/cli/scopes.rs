//! `auth-server scopes create|list|delete`.

use clap::Subcommand;

use super::{CliError, DEFAULT_ACCESS_TOKEN_TTL, Output, open_admin};
use crate::config::CommonArgs;

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
    let admin = open_admin(common, DEFAULT_ACCESS_TOKEN_TTL).await?;
    match cmd {
        ScopesCommand::Create { name, description } => {
            let scope = admin.create_scope(&name, &description).await?;
            out.print(&scope, || format!("scope {} created", scope.name));
        }
        ScopesCommand::List => {
            let scopes = admin.list_scopes().await?;
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
            admin.delete_scope(&name).await?;
            out.print(&serde_json::json!({"deleted": name}), || {
                format!("scope {name} deleted")
            });
        }
    }
    Ok(())
}
