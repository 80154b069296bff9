//! `auth-server clients create|list|show|disable|enable|delete|rotate-secret`.

use std::collections::BTreeSet;

use clap::Subcommand;
use secrecy::ExposeSecret;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AccessTokenTtl, CliError, Output, connect, deny_list, open_vault, split_list};
use crate::config::CommonArgs;
use crate::grants::client_auth::CLIENT_CACHE_TTL;
use crate::secrets::generate_client_secret;
use crate::store::{Client, GrantType};
use crate::vault::VaultError;

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; prints its id and secret (the secret is never shown again).
    Create {
        #[arg(long)]
        name: String,
        /// Scopes the client may request, space-separated.
        #[arg(long, default_value = "")]
        scopes: String,
        /// Grant type the client may use (repeatable); default client_credentials.
        /// `password` implies `refresh_token`.
        #[arg(long = "grant", value_parser = parse_grant)]
        grants: Vec<GrantType>,
    },
    /// List clients.
    List,
    /// Show one client.
    Show { id: String },
    /// Refuse the client's requests from now on and end its sessions and access tokens.
    Disable {
        id: String,
        #[command(flatten)]
        access_token_ttl: AccessTokenTtl,
    },
    /// Accept the client's requests again.
    Enable { id: String },
    /// Delete the client, its sessions and access tokens.
    Delete {
        id: String,
        #[command(flatten)]
        access_token_ttl: AccessTokenTtl,
    },
    /// Replace the client's secret; prints the new one.
    RotateSecret { id: String },
}

fn parse_grant(value: &str) -> Result<GrantType, String> {
    GrantType::parse(value)
        .ok_or_else(|| "expected client_credentials, password or refresh_token".to_owned())
}

#[derive(Serialize)]
struct Credentials<'a> {
    client_id: &'a str,
    client_secret: &'a str,
}

pub async fn run(cmd: ClientsCommand, common: &CommonArgs, out: &Output) -> Result<(), CliError> {
    // Hashing a new secret needs the pepper, hence AUTH_SECRETS; the other commands do not.
    let (store, hasher) = match cmd {
        ClientsCommand::Create { .. } | ClientsCommand::RotateSecret { .. } => {
            let vault = open_vault(common).await?;
            (vault.store, Some(vault.hasher))
        }
        _ => (connect(common).await?, None),
    };
    let hasher = || hasher.clone().ok_or(VaultError::SecretsRequired);
    let missing = |id: &str| CliError::NotFound(format!("no client with id `{id}`"));
    match cmd {
        ClientsCommand::Create {
            name,
            scopes,
            grants,
        } => {
            if name.trim().is_empty() {
                return Err(CliError::Invalid("--name must not be empty".to_owned()));
            }
            let secret = generate_client_secret()?;
            let mut grant_types: BTreeSet<GrantType> = if grants.is_empty() {
                BTreeSet::from([GrantType::ClientCredentials])
            } else {
                grants.into_iter().collect()
            };
            // A password login is a session: it comes with refresh tokens.
            if grant_types.contains(&GrantType::Password) {
                grant_types.insert(GrantType::RefreshToken);
            }
            let client = Client {
                id: Uuid::new_v4().to_string(),
                name,
                secret_hash: hasher()?.hash(secret.expose_secret()),
                grant_types,
                scopes: split_list(&scopes).map(str::to_owned).collect(),
                disabled: false,
                created_at: OffsetDateTime::now_utc(),
            };
            store.create_client(&client).await?;
            print_credentials(out, &client.id, secret.expose_secret());
        }
        ClientsCommand::List => {
            let clients = store.list_clients().await?;
            out.print(&clients, || {
                clients.iter().map(summary).collect::<Vec<_>>().join("\n")
            });
        }
        ClientsCommand::Show { id } => {
            let client = store.find_client(&id).await?.ok_or_else(|| missing(&id))?;
            out.print(&client, || {
                format!(
                    "client_id: {}\nname: {}\ngrants: {}\nscopes: {}\ndisabled: {}\ncreated_at: {}",
                    client.id,
                    client.name,
                    grant_list(&client),
                    client.scopes.iter().cloned().collect::<Vec<_>>().join(" "),
                    client.disabled,
                    plumbing::rfc3339(client.created_at)
                )
            });
        }
        ClientsCommand::Disable {
            id,
            access_token_ttl,
        } => {
            set_disabled(store.as_ref(), out, &id, true).await?;
            deny_list(common, &store, &access_token_ttl)
                .await?
                .revoke_removed_client(&id, CLIENT_CACHE_TTL)
                .await?;
        }
        ClientsCommand::Enable { id } => set_disabled(store.as_ref(), out, &id, false).await?,
        ClientsCommand::Delete {
            id,
            access_token_ttl,
        } => {
            if store.find_client(&id).await?.is_none() {
                return Err(missing(&id));
            }
            // Before the delete: it cascades to the families whose access tokens are denied.
            deny_list(common, &store, &access_token_ttl)
                .await?
                .revoke_removed_client(&id, CLIENT_CACHE_TTL)
                .await?;
            if !store.delete_client(&id).await? {
                return Err(missing(&id));
            }
            out.print(&serde_json::json!({"deleted": id}), || {
                format!("client {id} deleted")
            });
        }
        ClientsCommand::RotateSecret { id } => {
            let secret = generate_client_secret()?;
            if !store
                .set_client_secret_hash(&id, &hasher()?.hash(secret.expose_secret()))
                .await?
            {
                return Err(missing(&id));
            }
            print_credentials(out, &id, secret.expose_secret());
        }
    }
    Ok(())
}

async fn set_disabled(
    store: &dyn crate::store::Store,
    out: &Output,
    id: &str,
    disabled: bool,
) -> Result<(), CliError> {
    if !store.set_client_disabled(id, disabled).await? {
        return Err(CliError::NotFound(format!("no client with id `{id}`")));
    }
    let word = if disabled { "disabled" } else { "enabled" };
    out.print(
        &serde_json::json!({"client_id": id, "disabled": disabled}),
        || format!("client {id} {word}"),
    );
    Ok(())
}

fn print_credentials(out: &Output, client_id: &str, secret: &str) {
    out.print(&Credentials { client_id, client_secret: secret }, || {
        format!("client_id: {client_id}\nclient_secret: {secret}\n(store the secret now: it is not shown again)")
    });
}

fn grant_list(client: &Client) -> String {
    client
        .grant_types
        .iter()
        .map(|g| g.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn summary(client: &Client) -> String {
    let state = if client.disabled {
        "disabled"
    } else {
        "enabled"
    };
    format!(
        "{}\t{}\t{}\t{}",
        client.id,
        client.name,
        state,
        grant_list(client)
    )
}
