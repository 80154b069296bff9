//! What the database holds sealed under `AUTH_SECRETS` (the client-secret pepper and the
//! private signing keys), and the rules every process follows to open it — `serve` and each
//! admin command alike, through [`open`]:
//!
//! - without a secret nothing is opened (not even the database);
//! - a database whose pepper the secrets cannot decrypt is refused before anything is written;
//! - a pepper is generated only for a database without clients (a fresh one): no secret hash
//!   can depend on a pepper that is not stored, so none is ever replaced silently;
//! - where migrations run, the keys directory of earlier versions (`KEYS_DIR/<kid>.pem`,
//!   `KEYS_DIR/client-secret-pepper` or `CLIENT_SECRET_PEPPER`) is imported once; after that
//!   no file is read.
//!
//! [`reencrypt`] moves every sealed blob to the first secret, so an old one can be dropped.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::Serialize;
use time::OffsetDateTime;

use crate::keys::{self, KeyError, SigningKey};
use crate::sealed::{Purpose, SealError, SystemSecrets};
use crate::secrets::{MIN_PEPPER_LEN, PEPPER_NAME, SecretHasher, SecretsError, generate_pepper};
use crate::store::{self, Store, StoreError};

const PEPPER: Purpose<'static> = Purpose::SystemSecret(PEPPER_NAME);

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "AUTH_SECRETS is required (the secret that encrypts the signing keys and the client-secret pepper in the database, at least 32 bytes; make one with `openssl rand -base64 32` and give every replica and the CLI the same)"
    )]
    SecretsRequired,
    #[error(
        "AUTH_SECRETS does not match this database: its client-secret pepper was encrypted with a secret that is not in AUTH_SECRETS"
    )]
    Mismatch,
    #[error("the client-secret pepper in the database cannot be decrypted: {0}")]
    UnreadablePepper(SealError),
    #[error(
        "CLIENT_SECRET_PEPPER differs from the client-secret pepper stored in the database; unset it (the stored one is used)"
    )]
    PepperConflict,
    #[error(
        "the database has clients but no client-secret pepper, and there is none to import: set CLIENT_SECRET_PEPPER or KEYS_DIR (holding `{PEPPER_NAME}`) as the earlier version had them (a new pepper would invalidate every client secret)"
    )]
    PepperMissing,
    #[error(
        "the database holds no client-secret pepper yet: run `auth-server migrate` (with AUTH_SECRETS) first"
    )]
    NotMigrated,
    #[error("{path} must hold at least {MIN_PEPPER_LEN} bytes")]
    ShortPepperFile { path: String },
    #[error("{path}: {source}")]
    LegacyFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot import signing key `{kid}` ({state}): {path}: {source} (start once where the earlier version's KEYS_DIR is, or set KEYS_DIR to it)"
    )]
    LegacyKeyMissing {
        kid: String,
        state: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Seal(#[from] SealError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

/// Where a database created before migration 0005 kept what is now sealed in it.
#[derive(Debug, Clone, Copy)]
pub struct LegacySources<'a> {
    /// `KEYS_DIR`: `<kid>.pem` per key and `client-secret-pepper`.
    pub keys_dir: &'a Path,
    /// `CLIENT_SECRET_PEPPER`, which took precedence over the file.
    pub pepper: Option<&'a SecretString>,
}

/// How [`open`] opens the database.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions<'a> {
    /// `AUTH_SECRETS`; `None` is refused.
    pub secrets: Option<&'a SystemSecrets>,
    /// Apply pending migrations, then import the legacy files (once) and give a fresh
    /// database its pepper.
    pub migrate: bool,
    pub legacy: LegacySources<'a>,
    /// How long a retired key stays published: a missing legacy file of a retired key is an
    /// error only within that time.
    pub retired_grace: Duration,
}

/// The opened database with the secrets that open it and the pepper taken from it.
#[derive(Clone)]
pub struct Vault {
    pub store: Arc<dyn Store>,
    pub secrets: SystemSecrets,
    pub hasher: SecretHasher,
}

/// Where the pepper in use came from.
enum PepperOrigin {
    Stored,
    Imported(String),
    Generated,
}

/// Connects to `database_url` and opens its sealed contents, following the rules of the
/// module documentation.
pub async fn open(database_url: &str, options: OpenOptions<'_>) -> Result<Vault, VaultError> {
    let secrets = options.secrets.ok_or(VaultError::SecretsRequired)?.clone();
    let store = store::connect(database_url).await?;
    if options.migrate {
        store.migrate().await?;
    }
    let (pepper, origin) = unseal_pepper(store.as_ref(), &secrets, &options).await?;
    if let Some(configured) = options.legacy.pepper
        && configured.expose_secret().as_bytes() != pepper.expose_secret()
    {
        return Err(VaultError::PepperConflict);
    }
    let imported_keys = if options.migrate {
        import_legacy_keys(store.as_ref(), &secrets, &options).await?
    } else {
        0
    };
    let pepper_from = match &origin {
        PepperOrigin::Imported(from) => Some(from.as_str()),
        PepperOrigin::Generated => {
            tracing::debug!("fresh database: generated its client-secret pepper");
            None
        }
        PepperOrigin::Stored => None,
    };
    if pepper_from.is_some() || imported_keys > 0 {
        // Once: the next start finds everything in the database.
        tracing::info!(
            keys = imported_keys,
            pepper = pepper_from.unwrap_or("-"),
            dir = %options.legacy.keys_dir.display(),
            "imported the earlier version's signing keys and client-secret pepper into the database, encrypted with AUTH_SECRETS; these files are no longer read"
        );
    }
    Ok(Vault {
        store,
        hasher: SecretHasher::new(pepper.expose_secret()),
        secrets,
    })
}

/// The stored pepper, or (where migrations run) the imported or generated one, stored now.
async fn unseal_pepper(
    store: &dyn Store,
    secrets: &SystemSecrets,
    options: &OpenOptions<'_>,
) -> Result<(SecretSlice<u8>, PepperOrigin), VaultError> {
    if let Some(sealed) = store.find_system_secret(PEPPER_NAME).await? {
        return Ok((open_pepper(secrets, &sealed)?, PepperOrigin::Stored));
    }
    if !options.migrate {
        return Err(VaultError::NotMigrated);
    }
    let (pepper, origin) = match legacy_pepper(&options.legacy)? {
        Some((pepper, from)) => (pepper, PepperOrigin::Imported(from)),
        None if store.list_clients().await?.is_empty() => {
            (generate_pepper()?, PepperOrigin::Generated)
        }
        None => return Err(VaultError::PepperMissing),
    };
    let sealed = secrets.seal(PEPPER, pepper.expose_secret())?;
    let inserted = store
        .insert_system_secret(PEPPER_NAME, &sealed, OffsetDateTime::now_utc())
        .await?;
    if inserted {
        return Ok((pepper, origin));
    }
    // Another process starting on this database at the same moment stored its pepper first.
    let stored = store
        .find_system_secret(PEPPER_NAME)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("system secret {PEPPER_NAME} vanished")))?;
    Ok((open_pepper(secrets, &stored)?, PepperOrigin::Stored))
}

fn open_pepper(secrets: &SystemSecrets, sealed: &[u8]) -> Result<SecretSlice<u8>, VaultError> {
    secrets.open(PEPPER, sealed).map_err(|err| match err {
        SealError::UnknownSecret => VaultError::Mismatch,
        other => VaultError::UnreadablePepper(other),
    })
}

/// `CLIENT_SECRET_PEPPER`, else `KEYS_DIR/client-secret-pepper`, with where it came from.
fn legacy_pepper(
    legacy: &LegacySources<'_>,
) -> Result<Option<(SecretSlice<u8>, String)>, VaultError> {
    if let Some(pepper) = legacy.pepper {
        let bytes = pepper.expose_secret().as_bytes();
        if bytes.len() < MIN_PEPPER_LEN {
            return Err(SecretsError::PepperTooShort.into());
        }
        return Ok(Some((
            SecretSlice::from(bytes.to_vec()),
            "CLIENT_SECRET_PEPPER".to_owned(),
        )));
    }
    let path = legacy.keys_dir.join(PEPPER_NAME);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() >= MIN_PEPPER_LEN => {
            Ok(Some((SecretSlice::from(bytes), path.display().to_string())))
        }
        Ok(_) => Err(VaultError::ShortPepperFile {
            path: path.display().to_string(),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(VaultError::LegacyFile {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Seals `KEYS_DIR/<kid>.pem` into each key row that has no private key yet; returns how many.
/// A missing file is an error for a key still in use or published, and skipped for a retired
/// key whose tokens have all expired.
async fn import_legacy_keys(
    store: &dyn Store,
    secrets: &SystemSecrets,
    options: &OpenOptions<'_>,
) -> Result<usize, VaultError> {
    let now = OffsetDateTime::now_utc();
    let mut imported = 0;
    for key in store.list_stored_keys().await? {
        if key.sealed_private_key.is_some() {
            continue;
        }
        let record = &key.record;
        let path = options.legacy.keys_dir.join(format!("{}.pem", record.kid));
        let needed = keys::is_published(record, options.retired_grace, now);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(err) if !needed && err.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(kid = %record.kid, "retired key no longer published and without a file: not imported");
                continue;
            }
            Err(source) => {
                return Err(VaultError::LegacyKeyMissing {
                    kid: record.kid.clone(),
                    state: record.state.as_str(),
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let der = keys::pkcs8_from_pem(&text).ok().filter(|der| {
            SigningKey::from_pkcs8(&record.kid, record.alg, der.expose_secret()).is_some()
        });
        let Some(der) = der else {
            if needed {
                return Err(KeyError::InvalidKey(path).into());
            }
            tracing::warn!(kid = %record.kid, path = %path.display(), "retired key file is not a valid key: not imported");
            continue;
        };
        let sealed = secrets.seal(Purpose::SigningKey(&record.kid), der.expose_secret())?;
        if store
            .set_sealed_private_key(&record.kid, None, &sealed)
            .await?
        {
            imported += 1;
        }
    }
    Ok(imported)
}

/// Whether the database holds anything sealed (a pepper, a private key), i.e. whether some
/// `AUTH_SECRETS` already belongs to it. Migrations must have run.
pub async fn is_initialised(store: &dyn Store) -> Result<bool, StoreError> {
    if store.find_system_secret(PEPPER_NAME).await?.is_some() {
        return Ok(true);
    }
    Ok(store
        .list_stored_keys()
        .await?
        .iter()
        .any(|key| key.sealed_private_key.is_some()))
}

/// Outcome of re-encrypting ([`Admin::reencrypt`](crate::admin::Admin::reencrypt)).
#[derive(Debug, Default, Serialize)]
pub struct Reencryption {
    /// Blobs now sealed with the first secret that were not before.
    pub reencrypted: usize,
    /// Blobs that already were.
    pub unchanged: usize,
}

/// Re-seals every stored blob (the pepper, each private key) with the first secret, so the
/// others can be removed from `AUTH_SECRETS`. A blob changed by another process meanwhile is
/// left to it (each update applies only to the blob it replaces).
pub async fn reencrypt(
    store: &dyn Store,
    secrets: &SystemSecrets,
) -> Result<Reencryption, VaultError> {
    let mut outcome = Reencryption::default();
    for (name, sealed) in store.list_system_secrets().await? {
        if secrets.is_sealed_with_first(&sealed) {
            outcome.unchanged += 1;
            continue;
        }
        let purpose = Purpose::SystemSecret(&name);
        let plain = if name == PEPPER_NAME {
            open_pepper(secrets, &sealed)?
        } else {
            secrets.open(purpose, &sealed)?
        };
        let resealed = secrets.seal(purpose, plain.expose_secret())?;
        if store
            .replace_system_secret(&name, &sealed, &resealed)
            .await?
        {
            outcome.reencrypted += 1;
        }
    }
    for key in store.list_stored_keys().await? {
        let Some(sealed) = &key.sealed_private_key else {
            continue;
        };
        if secrets.is_sealed_with_first(sealed) {
            outcome.unchanged += 1;
            continue;
        }
        let der = keys::open_private_key(secrets, &key)?;
        let kid = &key.record.kid;
        let resealed = secrets.seal(Purpose::SigningKey(kid), der.expose_secret())?;
        if store
            .set_sealed_private_key(kid, Some(sealed), &resealed)
            .await?
        {
            outcome.reencrypted += 1;
        }
    }
    Ok(outcome)
}

/// The default `retired_grace` of commands that do not know the access-token lifetime: the
/// default lifetime plus the verifiers' leeway.
pub const DEFAULT_RETIRED_GRACE: Duration =
    Duration::from_secs(900 + crate::revocation::VERIFIER_LEEWAY.as_secs());
