//! Persistent state of the authorization server behind one trait, [`Store`], with a SQLite
//! and a PostgreSQL implementation. SQL lives in the backend modules only.

mod postgres;
mod sql;
mod sqlite;

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use plumbing::connect::Backend;
use time::OffsetDateTime;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::identifiers::IdentifierError;
use crate::keys::{KeyAlgorithm, KeyState};
pub use token_guard::CutoffKind;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("unknown scope `{0}`")]
    UnknownScope(String),
    #[error("scope `{0}` is still granted to at least one client")]
    ScopeInUse(String),
    #[error("unsupported database URL (expected sqlite:… or postgres://…)")]
    UnsupportedUrl,
    /// The database could not be opened; names the file or host, never the URL.
    #[error(transparent)]
    Connect(#[from] plumbing::connect::ConnectError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("{0}")]
    InvalidIdentifier(#[from] IdentifierError),
}

/// A permission that tokens can carry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Scope {
    pub name: String,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// OAuth2 grant types a client may be allowed to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    ClientCredentials,
    Password,
    RefreshToken,
}

impl GrantType {
    pub const ALL: [GrantType; 3] = [
        GrantType::ClientCredentials,
        GrantType::Password,
        GrantType::RefreshToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::Password => "password",
            GrantType::RefreshToken => "refresh_token",
        }
    }

    pub fn parse(value: &str) -> Option<GrantType> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == value)
    }
}

/// A registered client application.
#[derive(Clone, serde::Serialize)]
pub struct Client {
    pub id: String,
    pub name: String,
    /// HMAC-SHA-256 of the client secret under the server pepper; never serialized.
    #[serde(skip)]
    pub secret_hash: Vec<u8>,
    pub grant_types: BTreeSet<GrantType>,
    /// Scopes this client may request, sorted.
    pub scopes: BTreeSet<String>,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret_hash", &"***")
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// An end user who logs in with the password grant.
#[derive(Clone, serde::Serialize)]
pub struct User {
    pub id: String,
    /// As entered; uniqueness is on the RFC 8265 form ([`normalize_username`]).
    pub email: String,
    /// argon2id PHC string; never serialized.
    #[serde(skip)]
    pub password_hash: String,
    /// Scopes the user's tokens may carry, sorted.
    pub permissions: BTreeSet<String>,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("password_hash", &"***")
            .field("permissions", &self.permissions)
            .field("disabled", &self.disabled)
            .finish()
    }
}

pub use crate::identifiers::normalize_username;

/// Marks the `email_normalized` of a user whose RFC 8265 form collides with another user's
/// (found when re-normalizing rows stored before migration 0003): `<form> #dup <id>`. It holds
/// spaces, which RFC 8265's UsernameCaseMapped never produces, so no typed name reaches it and
/// neither account answers to the ambiguous name until an operator deletes one of them and
/// runs `auth-server migrate` again.
pub fn duplicate_marker(normalized: &str, user_id: &str) -> String {
    format!("{normalized} #dup {user_id}")
}

/// The lock-out rule of one throttle key, in the form the store applies atomically: after
/// `failures` ≥ `threshold` failures (in-flight attempts included) the key locks for
/// `base_secs · 2^(failures − threshold)` seconds, at most `max_secs` (reached after
/// `max_doublings` doublings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockRule {
    pub threshold: i64,
    pub base_secs: i64,
    pub max_secs: i64,
    /// The fewest doublings of `base_secs` that reach `max_secs` (≤ 20).
    pub max_doublings: i64,
}

/// One key to reserve a login attempt on.
#[derive(Debug, Clone)]
pub struct ThrottleKey {
    pub key: String,
    pub rule: LockRule,
}

/// The answer to [`Store::reserve_login_attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Counted as a failure on every key until released; `numbers[i]` is this attempt's
    /// number in the current window of `keys[i]`.
    Allowed { numbers: Vec<i64> },
    /// Some key is locked (nothing was counted) until this unix second, inclusive.
    Locked { until: i64 },
}

/// How much of a reserved attempt [`Store::release_login_attempts`] takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// This attempt only (a success from an address, or a refused request).
    One,
    /// This attempt and every one counted before it (a success clears the account).
    UpTo,
}

/// Attempt `number` of `key` (from [`LoginAttempt::Allowed`]), to give back.
#[derive(Debug, Clone, Copy)]
pub struct ReleasedAttempt<'a> {
    pub key: &'a str,
    pub number: i64,
    pub release: Release,
    pub threshold: i64,
}

/// All refresh tokens descending from one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    /// The scope granted at login; refreshed access tokens carry a subset of it.
    pub scope: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// One refresh token, known by its keyed hash only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub token_hash: Vec<u8>,
    pub family_id: String,
    pub parent_hash: Option<Vec<u8>>,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// When it was exchanged for its successor.
    pub used_at: Option<OffsetDateTime>,
    /// `jti` of the access token issued with it (none for tokens stored before migration 4),
    /// denied when the family is revoked.
    pub access_jti: Option<String>,
    /// `exp` of that access token, unix seconds.
    pub access_expires_at: Option<i64>,
}

/// A refresh token with its family and its successor, if it was rotated.
#[derive(Debug, Clone)]
pub struct RefreshLookup {
    pub token: RefreshTokenRecord,
    pub family: RefreshFamily,
    pub successor: Option<RefreshTokenRecord>,
}

/// Whose refresh families to revoke.
#[derive(Debug, Clone, Copy)]
pub enum FamilyOwner<'a> {
    Client(&'a str),
    User(&'a str),
}

/// Which refresh families' access tokens to list.
#[derive(Debug, Clone, Copy)]
pub enum Families<'a> {
    /// One family, by id.
    One(&'a str),
    /// Every family of a client or user.
    Of(FamilyOwner<'a>),
}

/// A "not valid before" cutoff: tokens of `subject` issued at or before `not_before_ms` are
/// revoked (see `token_guard::is_revoked_by`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectCutoff {
    pub kind: CutoffKind,
    /// A user id (`sub`) or a client id.
    pub subject: String,
    /// Unix milliseconds.
    pub not_before_ms: i64,
    /// Unix seconds; past it every covered token has expired.
    pub expires_at: i64,
}

/// Metadata of a signing key (its private key is a [`StoredKey`]'s, sealed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: KeyAlgorithm,
    pub state: KeyState,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub activated_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
}

/// A signing key as stored: its metadata and its PKCS#8 private key sealed under
/// `AUTH_SECRETS` ([`crate::sealed`]); `None` for a key created before migration 0005 whose
/// `KEYS_DIR/<kid>.pem` has not been imported yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub record: KeyRecord,
    pub sealed_private_key: Option<Vec<u8>>,
}

/// Storage operations of the authorization server.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn create_scope(&self, scope: &Scope) -> Result<(), StoreError>;
    async fn list_scopes(&self) -> Result<Vec<Scope>, StoreError>;
    /// Deletes a scope; `Ok(false)` when it did not exist.
    async fn delete_scope(&self, name: &str) -> Result<bool, StoreError>;

    /// Inserts a client and its scopes atomically; every scope must exist.
    async fn create_client(&self, client: &Client) -> Result<(), StoreError>;
    async fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError>;
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError>;
    /// `Ok(false)` when the client does not exist.
    async fn set_client_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError>;
    async fn set_client_secret_hash(&self, id: &str, hash: &[u8]) -> Result<bool, StoreError>;
    async fn delete_client(&self, id: &str) -> Result<bool, StoreError>;

    /// Inserts a user and their permissions atomically; the e-mail is unique ignoring case.
    async fn create_user(&self, user: &User) -> Result<(), StoreError>;
    async fn find_user(&self, id: &str) -> Result<Option<User>, StoreError>;
    /// Looks a user up by e-mail, ignoring case.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    async fn set_user_permissions(
        &self,
        id: &str,
        permissions: &BTreeSet<String>,
    ) -> Result<bool, StoreError>;
    async fn set_user_password_hash(&self, id: &str, hash: &str) -> Result<bool, StoreError>;
    async fn set_user_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError>;
    async fn delete_user(&self, id: &str) -> Result<bool, StoreError>;

    /// Starts a refresh family with its first token.
    async fn create_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &RefreshTokenRecord,
    ) -> Result<(), StoreError>;
    async fn find_refresh_token(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<RefreshLookup>, StoreError>;
    /// Marks `parent_hash` used and inserts its successor atomically; `Ok(false)` (and no
    /// change) when the parent was already used.
    async fn rotate_refresh_token(
        &self,
        parent_hash: &[u8],
        used_at: OffsetDateTime,
        successor: &RefreshTokenRecord,
    ) -> Result<bool, StoreError>;
    /// `Ok(false)` when the family did not exist or was already revoked.
    async fn revoke_refresh_family(
        &self,
        family_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Revokes every live family of a client or user; returns how many.
    async fn revoke_refresh_families(
        &self,
        owner: FamilyOwner<'_>,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError>;

    /// Puts an access token's `jti` on the deny-list until `expires_at` (unix seconds) and
    /// drops entries that have expired.
    async fn deny_access_token(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError>;
    async fn is_access_token_denied(&self, jti: &str, now: i64) -> Result<bool, StoreError>;
    /// Every denied access token not yet expired at `now`: `(jti, expires_at)`. For resource
    /// servers in the same process that cannot read the Redis mirror.
    async fn denied_access_tokens(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError>;
    /// The access tokens issued with the refresh tokens of `families`, unexpired at `now`:
    /// `(jti, exp)`.
    async fn family_access_tokens(
        &self,
        families: Families<'_>,
        now: i64,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Records a cutoff, keeping the larger `not_before_ms` and `expires_at` when the subject
    /// already has one, and drops cutoffs expired at `now`.
    async fn revoke_subject(&self, cutoff: &SubjectCutoff, now: i64) -> Result<(), StoreError>;
    /// The cutoff (unix ms) of `subject`, if one is in force at `now`.
    async fn subject_cutoff(
        &self,
        kind: CutoffKind,
        subject: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError>;
    /// Every cutoff in force at `now`, for resource servers in the same process.
    async fn revoked_subjects(&self, now: i64) -> Result<Vec<SubjectCutoff>, StoreError>;

    /// Until when (unix seconds, inclusive) `key` is locked out, if it is at `now`.
    async fn login_locked_until(&self, key: &str, now: i64) -> Result<Option<i64>, StoreError>;
    /// Reserves one login attempt on every key, before the password is verified, so parallel
    /// guesses cannot pass a check together. One atomic `INSERT … ON CONFLICT DO UPDATE …
    /// RETURNING` for all keys counts the attempt as a failure on each (restarting the count
    /// when the window that began before `window_start_after` is over) and locks a key per its
    /// rule when its count reaches the threshold — unless the key is locked at `now`
    /// (`locked_until` ≥ `now`); then what was counted is taken back and the answer is
    /// [`LoginAttempt::Locked`].
    async fn reserve_login_attempt(
        &self,
        keys: &[ThrottleKey],
        now: i64,
        window_start_after: i64,
    ) -> Result<LoginAttempt, StoreError>;
    /// Takes back reserved attempts, one statement for all keys: one attempt or every attempt
    /// up to it. A key's lock goes when its remaining count is below the threshold or no
    /// attempt was reserved after this one (the lock was this attempt's).
    async fn release_login_attempts(
        &self,
        attempts: &[ReleasedAttempt<'_>],
    ) -> Result<(), StoreError>;

    /// Inserts a key with its sealed private key.
    async fn insert_key(
        &self,
        key: &KeyRecord,
        sealed_private_key: &[u8],
    ) -> Result<(), StoreError>;
    /// All keys, newest first.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// All keys with their sealed private keys, newest first.
    async fn list_stored_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Replaces the sealed private key of `kid` if it still is `expected` (`None`: not yet
    /// set); `Ok(false)` and no change otherwise.
    async fn set_sealed_private_key(
        &self,
        kid: &str,
        expected: Option<&[u8]>,
        sealed: &[u8],
    ) -> Result<bool, StoreError>;
    /// Makes `next_kid` the active key and retires the current active key, atomically.
    async fn activate_key(&self, next_kid: &str, at: OffsetDateTime) -> Result<bool, StoreError>;
    async fn retire_key(&self, kid: &str, at: OffsetDateTime) -> Result<bool, StoreError>;

    /// The sealed secret called `name`, if stored.
    async fn find_system_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores a sealed secret unless one of that name exists; `Ok(false)` (and no change)
    /// when it does, so processes starting together keep the first one.
    async fn insert_system_secret(
        &self,
        name: &str,
        sealed: &[u8],
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Every sealed secret: `(name, sealed)`.
    async fn list_system_secrets(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Replaces the sealed secret `name` if it still is `expected`; `Ok(false)` otherwise.
    async fn replace_system_secret(
        &self,
        name: &str,
        expected: &[u8],
        sealed: &[u8],
    ) -> Result<bool, StoreError>;
}

/// Opens the store named by a `sqlite:` or `postgres://` URL.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    match Backend::of_url(url) {
        Some(Backend::Sqlite) => Ok(Arc::new(SqliteStore::connect(url).await?)),
        Some(Backend::Postgres) => Ok(Arc::new(PostgresStore::connect(url).await?)),
        None => Err(StoreError::UnsupportedUrl),
    }
}

/// Splits a space-delimited column into grant types.
fn parse_grant_types(column: &str) -> Result<BTreeSet<GrantType>, StoreError> {
    column
        .split_whitespace()
        .map(|g| GrantType::parse(g).ok_or_else(|| StoreError::Corrupt(format!("grant type {g}"))))
        .collect()
}

fn join_grant_types(grants: &BTreeSet<GrantType>) -> String {
    grants
        .iter()
        .map(|g| g.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_key_fields(alg: &str, state: &str) -> Result<(KeyAlgorithm, KeyState), StoreError> {
    let alg = KeyAlgorithm::parse(alg).ok_or_else(|| StoreError::Corrupt(format!("alg {alg}")))?;
    let state =
        KeyState::parse(state).ok_or_else(|| StoreError::Corrupt(format!("state {state}")))?;
    Ok((alg, state))
}

/// Maps a constraint violation on insert to a domain error.
fn map_insert_error(err: sqlx::Error, what: &str, scope: Option<&str>) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        match db.kind() {
            sqlx::error::ErrorKind::UniqueViolation => {
                return StoreError::AlreadyExists(what.to_owned());
            }
            sqlx::error::ErrorKind::ForeignKeyViolation => {
                if let Some(scope) = scope {
                    return StoreError::UnknownScope(scope.to_owned());
                }
            }
            _ => {}
        }
    }
    StoreError::Database(err)
}

/// Whether `err` is a foreign-key violation. SQLite reports an `ON DELETE RESTRICT` violation
/// as SQLITE_CONSTRAINT_TRIGGER (1811), which sqlx does not classify.
fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation || db.code().as_deref() == Some("1811"))
}
