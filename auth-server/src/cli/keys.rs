//! `auth-server keys generate|import|list|rotate|retire`.

use std::path::PathBuf;

use clap::Subcommand;

use super::{CliError, DEFAULT_ACCESS_TOKEN_TTL, Output, open_admin, open_sealed_admin};
use crate::admin::{AdminError, KeyError};
use crate::config::{CommonArgs, parse_key_algorithm};
use crate::model::KeyAlgorithm;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a key: published as `next`, or made active when no key of its algorithm is
    /// active.
    Generate {
        #[arg(long, default_value = "ES256", value_parser = parse_key_algorithm)]
        alg: KeyAlgorithm,
    },
    /// Add an existing private key (PKCS#8 PEM) as the `next` key; prints its kid.
    Import {
        /// The `-----BEGIN PRIVATE KEY-----` file.
        #[arg(long)]
        pem: PathBuf,
        /// The key's algorithm; default: the one the key is for.
        #[arg(long, value_parser = parse_key_algorithm)]
        alg: Option<KeyAlgorithm>,
    },
    /// List keys with their states.
    List,
    /// Per algorithm: promote the next key to active, retire the active one and generate a
    /// new next key.
    Rotate {
        /// Rotate only this algorithm's keys; default: every algorithm that has an active key.
        #[arg(long, value_parser = parse_key_algorithm)]
        alg: Option<KeyAlgorithm>,
    },
    /// Retire a key that is not active (it stays in the JWKS until its tokens expire).
    Retire { kid: String },
}

pub async fn run(cmd: KeysCommand, common: &CommonArgs, out: &Output) -> Result<(), CliError> {
    match cmd {
        // Generating or importing seals a private key, hence AUTH_SECRETS; list and retire do
        // not need it.
        KeysCommand::Generate { alg } => {
            let record = open_sealed_admin(common).await?.generate_key(alg).await?;
            out.print(&record, || {
                format!(
                    "key {} ({}) generated as {}",
                    record.kid,
                    alg.as_str(),
                    record.state.as_str()
                )
            });
        }
        KeysCommand::Import { pem, alg } => {
            let admin = open_sealed_admin(common).await?;
            let text = std::fs::read(&pem).map_err(|source| {
                AdminError::Keys(KeyError::Io {
                    path: pem.clone(),
                    source,
                })
            })?;
            let record = admin.import_key(&text, alg, &pem).await?;
            out.print(&record, || {
                format!(
                    "key {} ({}) imported as {}",
                    record.kid,
                    record.alg.as_str(),
                    record.state.as_str()
                )
            });
        }
        KeysCommand::List => {
            let records = open_admin(common, DEFAULT_ACCESS_TOKEN_TTL)
                .await?
                .list_keys()
                .await?;
            out.print(&records, || {
                records
                    .iter()
                    .map(|k| format!("{}\t{}\t{}", k.kid, k.alg.as_str(), k.state.as_str()))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        KeysCommand::Rotate { alg } => {
            let admin = open_sealed_admin(common).await?;
            let rotations = match alg {
                Some(alg) => vec![admin.rotate_keys(alg).await?],
                None => admin.rotate_all_keys().await?,
            };
            for rotation in rotations.iter().filter(|r| r.unannounced) {
                eprintln!(
                    "warning: no next {} key was published; verifiers learn key {} on their next JWKS refetch",
                    rotation.alg.as_str(),
                    rotation.activated
                );
            }
            out.print(&rotations, || {
                rotations
                    .iter()
                    .map(|rotation| {
                        format!(
                            "alg: {}\nactive: {}\nretired: {}\nnext: {}",
                            rotation.alg.as_str(),
                            rotation.activated,
                            rotation.retired.as_deref().unwrap_or("-"),
                            rotation.next
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n\n")
            });
        }
        KeysCommand::Retire { kid } => {
            open_admin(common, DEFAULT_ACCESS_TOKEN_TTL)
                .await?
                .retire_key(&kid)
                .await?;
            out.print(&serde_json::json!({"retired": kid}), || {
                format!("key {kid} retired")
            });
        }
    }
    Ok(())
}
