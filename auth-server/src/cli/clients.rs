//! `auth-server clients create|list|show|disable|enable|delete|rotate-secret`.

use clap::Subcommand;
use secrecy::ExposeSecret;
use serde::Serialize;

use super::{
    AccessTokenTtl, CliError, DEFAULT_ACCESS_TOKEN_TTL, Output, open_admin, open_sealed_admin,
    split_list,
};
use crate::admin::{AdminError, NewClient};
use crate::config::CommonArgs;
use crate::model::{Client, GrantType, IdTokenAlg};

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
        /// `password` and `authorization_code` imply `refresh_token`.
        #[arg(long = "grant", value_parser = parse_grant)]
        grants: Vec<GrantType>,
        /// Where the authorization endpoint may send the browser back (repeatable; at least
        /// one with, none without `--grant authorization_code`).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Where logout may send the browser (repeatable; authorization_code clients only).
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// A public client (a native or browser app): no secret, PKCE only; authorization_code
        /// only.
        #[arg(long)]
        public: bool,
        /// Its users are not asked for consent.
        #[arg(long)]
        first_party: bool,
        /// The algorithm of its id_tokens.
        #[arg(long, value_parser = parse_id_token_alg, default_value = "RS256")]
        id_token_alg: IdTokenAlg,
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
    GrantType::parse(value).ok_or_else(|| {
        "expected authorization_code, client_credentials, password or refresh_token".to_owned()
    })
}

fn parse_id_token_alg(value: &str) -> Result<IdTokenAlg, String> {
    IdTokenAlg::parse(value).ok_or_else(|| "expected RS256 or ES256".to_owned())
}

#[derive(Serialize)]
struct Credentials<'a> {
    client_id: &'a str,
    /// Absent for a public client, which has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<&'a str>,
}

pub async fn run(cmd: ClientsCommand, common: &CommonArgs, out: &Output) -> Result<(), CliError> {
    match cmd {
        ClientsCommand::Create {
            name,
            scopes,
            grants,
            redirect_uris,
            post_logout_redirect_uris,
            public,
            first_party,
            id_token_alg,
        } => {
            // Hashing the new secret needs the pepper, hence AUTH_SECRETS.
            let admin = open_sealed_admin(common).await?;
            let new = NewClient {
                redirect_uris,
                post_logout_redirect_uris,
                public,
                first_party,
                id_token_alg,
                ..NewClient::new(name, split_list(&scopes), grants)
            };
            let registered = admin.register_client(new).await.map_err(|err| match err {
                AdminError::EmptyClientName => {
                    CliError::Invalid("--name must not be empty".to_owned())
                }
                other => other.into(),
            })?;
            print_credentials(
                out,
                &registered.client.id,
                registered.secret.as_ref().map(|s| s.expose_secret()),
            );
        }
        ClientsCommand::List => {
            let clients = open_admin(common, DEFAULT_ACCESS_TOKEN_TTL)
                .await?
                .list_clients()
                .await?;
            out.print(&clients, || {
                clients.iter().map(summary).collect::<Vec<_>>().join("\n")
            });
        }
        ClientsCommand::Show { id } => {
            let client = open_admin(common, DEFAULT_ACCESS_TOKEN_TTL)
                .await?
                .client(&id)
                .await?;
            out.print(&client, || {
                format!(
                    "client_id: {}\nname: {}\ngrants: {}\nscopes: {}\ndisabled: {}\npublic: {}\n\
                     first_party: {}\nid_token_alg: {}\nredirect_uris: {}\n\
                     post_logout_redirect_uris: {}\ncreated_at: {}",
                    client.id,
                    client.name,
                    grant_list(&client),
                    client.scopes.iter().cloned().collect::<Vec<_>>().join(" "),
                    client.disabled,
                    client.public,
                    client.first_party,
                    client.id_token_alg.as_str(),
                    client.redirect_uris.join(" "),
                    client.post_logout_redirect_uris.join(" "),
                    plumbing::rfc3339(client.created_at)
                )
            });
        }
        ClientsCommand::Disable {
            id,
            access_token_ttl,
        } => {
            open_admin(common, access_token_ttl.value)
                .await?
                .disable_client(&id)
                .await?;
            print_disabled(out, &id, true);
        }
        ClientsCommand::Enable { id } => {
            open_admin(common, DEFAULT_ACCESS_TOKEN_TTL)
                .await?
                .enable_client(&id)
                .await?;
            print_disabled(out, &id, false);
        }
        ClientsCommand::Delete {
            id,
            access_token_ttl,
        } => {
            open_admin(common, access_token_ttl.value)
                .await?
                .delete_client(&id)
                .await?;
            out.print(&serde_json::json!({"deleted": id}), || {
                format!("client {id} deleted")
            });
        }
        ClientsCommand::RotateSecret { id } => {
            let secret = open_sealed_admin(common)
                .await?
                .rotate_client_secret(&id)
                .await?;
            print_credentials(out, &id, Some(secret.expose_secret()));
        }
    }
    Ok(())
}

fn print_disabled(out: &Output, id: &str, disabled: bool) {
    let word = if disabled { "disabled" } else { "enabled" };
    out.print(
        &serde_json::json!({"client_id": id, "disabled": disabled}),
        || format!("client {id} {word}"),
    );
}

fn print_credentials(out: &Output, client_id: &str, secret: Option<&str>) {
    out.print(&Credentials { client_id, client_secret: secret }, || match secret {
        Some(secret) => format!("client_id: {client_id}\nclient_secret: {secret}\n(store the secret now: it is not shown again)"),
        None => format!("client_id: {client_id}\n(a public client: it has no secret)"),
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
