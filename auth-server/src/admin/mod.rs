//! The admin layer: every operation an operator performs on the authorization server — scopes,
//! clients, users, consents, token revocation, signing keys, re-encrypting what `AUTH_SECRETS` seals —
//! as one method of [`Admin`] each. A method holds its rules once (input normalisation, grant
//! implications, validation, secret generation and hashing, the revocations an event implies)
//! and returns a typed result or an [`AdminError`]; it prints nothing and reads no input. The
//! CLI ([`crate::cli`]), the one-process stack, the test helpers and a future HTTP admin API
//! all call these methods, so none of them can skip a rule.
//!
//! An [`Admin`] comes from a running server ([`Application::admin`](crate::Application::admin):
//! its store, pepper, hashing pool and deny-list) or is opened on a database URL like an admin
//! command ([`Admin::open`], [`Admin::open_sealed`]).

mod clients;
mod consents;
mod keys;
mod scopes;
mod tokens;
mod users;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::OnceCell;

pub use crate::keys::{KeyError, Rotation};
pub use crate::revocation::Revoked;
pub use crate::vault::{Reencryption, VaultError};
pub use clients::{NewClient, RegisteredClient};
pub use consents::ConsentsRevoked;
pub use scopes::MAX_SCOPE_LEN;
pub use users::{NewUser, ProfileUpdate, is_email};

use crate::identifiers::IdentifierError;
use crate::passwords::{PasswordError, PasswordPool};
use crate::revocation::{DenyList, DenyListError};
use crate::sealed::SystemSecrets;
use crate::secrets::{SecretHasher, SecretsError};
use crate::store::{self, Store, StoreError};
use crate::vault::{self, LegacySources, OpenOptions};

/// Why an admin operation failed. The texts are what the CLI prints (after `error: `).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A client's name is empty or only spaces.
    #[error("the client name must not be empty")]
    EmptyClientName,
    /// A client registration against the rules of the authorization code flow.
    #[error("{0}")]
    ClientRules(&'static str),
    /// A redirect URI that cannot be registered.
    #[error(transparent)]
    RedirectUri(#[from] crate::signin::redirect_uri::RedirectUriError),
    /// A scope name that is not an RFC 6749 §3.3 `scope-token` of at most
    /// [`MAX_SCOPE_LEN`] bytes.
    #[error(
        "invalid scope name `{0}`: use 1–{MAX_SCOPE_LEN} printable ASCII characters without spaces, quotes or backslashes"
    )]
    InvalidScopeName(String),
    /// A user name whose RFC 8265 form does not exist (or is too long).
    #[error(transparent)]
    InvalidUsername(#[from] IdentifierError),
    /// A display name (the OIDC `name` claim) that is empty or holds control characters.
    #[error("the display name must not be empty or contain control characters")]
    InvalidDisplayName,
    /// A user name that is not an e-mail address ([`is_email`]).
    #[error("`{0}` is not an e-mail address")]
    NotAnEmail(String),
    /// A new password against the policy, or the hashing failed.
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("no client with id `{0}`")]
    ClientNotFound(String),
    /// No user with this id or e-mail.
    #[error("no user `{0}`")]
    UserNotFound(String),
    #[error("no scope named `{0}`")]
    ScopeNotFound(String),
    /// `openid`, `profile` and `email` are built in (OpenID Connect) and cannot be deleted.
    #[error("`{0}` is a built-in OpenID Connect scope and cannot be deleted")]
    BuiltInScope(String),
    /// The task hashing a password was cancelled or panicked.
    #[error("password hashing was interrupted")]
    HashingInterrupted,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// Opening what `AUTH_SECRETS` seals, or the operation needs it and it was not given
    /// ([`VaultError::SecretsRequired`]).
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    DenyList(#[from] DenyListError),
}

/// Where and how [`Admin::open`] opens the database, as an admin command is configured.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// `sqlite:PATH` or `postgres://…`.
    pub database_url: String,
    /// `AUTH_SECRETS`. Without it the database is opened without its sealed contents, and the
    /// operations that need the pepper or the private keys fail with
    /// [`VaultError::SecretsRequired`].
    pub secrets: Option<SystemSecrets>,
    /// Import source only: the keys directory of an earlier version (`KEYS_DIR`).
    pub keys_dir: PathBuf,
    /// Import source only: the pepper an earlier version was given (`CLIENT_SECRET_PEPPER`).
    pub client_secret_pepper: Option<SecretString>,
    /// Redis URL and key prefix of the deny-list mirror; `None`: the database only.
    pub redis: Option<(String, String)>,
    /// The longest access-token lifetime in use: a revocation is kept until every token it
    /// covers has expired.
    pub access_token_ttl: Duration,
}

impl AdminOptions {
    /// Options for `database_url` without secrets, Redis or legacy sources, and the default
    /// access-token lifetime (900 s).
    pub fn new(database_url: &str) -> AdminOptions {
        AdminOptions {
            database_url: database_url.to_owned(),
            secrets: None,
            keys_dir: PathBuf::from("keys"),
            client_secret_pepper: None,
            redis: None,
            access_token_ttl: Duration::from_secs(900),
        }
    }
}

/// The admin operations on one database; cheap to clone. See the [module](self) documentation.
#[derive(Clone)]
pub struct Admin {
    store: Arc<dyn Store>,
    /// The pepper and the secrets, when opened with `AUTH_SECRETS`.
    sealed: Option<Sealed>,
    /// A running server's hashing pool; `None`: a blocking thread per hash (a command).
    passwords: Option<Arc<PasswordPool>>,
    revocation: Arc<Revocation>,
}

#[derive(Clone)]
struct Sealed {
    secrets: SystemSecrets,
    hasher: SecretHasher,
}

/// Where revocations go: the deny-list, connected (to Redis) only when first needed so that
/// commands that revoke nothing work while Redis is away.
struct Revocation {
    redis: Option<(String, String)>,
    access_token_ttl: Duration,
    deny_list: OnceCell<DenyList>,
}

impl Admin {
    /// Opens the database like an admin command: with `AUTH_SECRETS` by the rules every
    /// process follows (migrations, the one-time import of an earlier version's keys
    /// directory, the secret checked against the database); without, the store only, migrated.
    pub async fn open(options: &AdminOptions) -> Result<Admin, AdminError> {
        if options.secrets.is_some() {
            return Admin::open_sealed(options).await;
        }
        let store = store::connect(&options.database_url).await?;
        store.migrate().await?;
        Ok(Admin::with_store(store, None, options))
    }

    /// [`Admin::open`] for operations that need what `AUTH_SECRETS` seals: without it,
    /// [`VaultError::SecretsRequired`] before anything is opened.
    pub async fn open_sealed(options: &AdminOptions) -> Result<Admin, AdminError> {
        let vault = vault::open(
            &options.database_url,
            OpenOptions {
                secrets: options.secrets.as_ref(),
                migrate: true,
                legacy: LegacySources {
                    keys_dir: &options.keys_dir,
                    pepper: options.client_secret_pepper.as_ref(),
                },
                retired_grace: vault::DEFAULT_RETIRED_GRACE,
            },
        )
        .await?;
        let sealed = Sealed {
            secrets: vault.secrets,
            hasher: vault.hasher,
        };
        Ok(Admin::with_store(vault.store, Some(sealed), options))
    }

    fn with_store(store: Arc<dyn Store>, sealed: Option<Sealed>, options: &AdminOptions) -> Admin {
        Admin {
            store,
            sealed,
            passwords: None,
            revocation: Arc::new(Revocation {
                redis: options.redis.clone(),
                access_token_ttl: options.access_token_ttl,
                deny_list: OnceCell::new(),
            }),
        }
    }

    /// The admin of a running server: its store, pepper and secrets, its hashing pool (no
    /// argon2 memory of its own) and its deny-list.
    pub(crate) fn of_server(
        store: Arc<dyn Store>,
        secrets: SystemSecrets,
        hasher: SecretHasher,
        passwords: Arc<PasswordPool>,
        deny_list: DenyList,
        access_token_ttl: Duration,
    ) -> Admin {
        Admin {
            store,
            sealed: Some(Sealed { secrets, hasher }),
            passwords: Some(passwords),
            revocation: Arc::new(Revocation {
                redis: None,
                access_token_ttl,
                deny_list: OnceCell::new_with(Some(deny_list)),
            }),
        }
    }

    /// The pepper and secrets, or [`VaultError::SecretsRequired`].
    fn sealed(&self) -> Result<&Sealed, AdminError> {
        self.sealed
            .as_ref()
            .ok_or(AdminError::Vault(VaultError::SecretsRequired))
    }

    /// The deny-list, connecting to Redis on first use.
    async fn deny_list(&self) -> Result<&DenyList, AdminError> {
        let revocation = &self.revocation;
        let store = self.store.clone();
        Ok(revocation
            .deny_list
            .get_or_try_init(|| async move {
                match &revocation.redis {
                    Some((url, prefix)) => {
                        DenyList::with_redis(store, url, prefix, revocation.access_token_ttl).await
                    }
                    None => Ok(DenyList::store_only(store, revocation.access_token_ttl)),
                }
            })
            .await?)
    }

    /// Re-seals every blob (the pepper, each private key) with the first secret of
    /// `AUTH_SECRETS`, so the others can be removed from the list.
    pub async fn reencrypt(&self) -> Result<Reencryption, AdminError> {
        let sealed = self.sealed()?;
        Ok(vault::reencrypt(self.store.as_ref(), &sealed.secrets).await?)
    }
}

/// Whether the database at `database_url` already belongs to some `AUTH_SECRETS` (it holds a
/// sealed pepper or private key), after applying its migrations. A process must then be given
/// that secret, never a new one.
pub async fn is_sealed(database_url: &str) -> Result<bool, AdminError> {
    let store = store::connect(database_url).await?;
    store.migrate().await?;
    Ok(vault::is_initialised(store.as_ref()).await?)
}
