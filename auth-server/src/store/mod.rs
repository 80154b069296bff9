//! Persistent state of the authorization server behind [`Store`], with a SQLite and a
//! PostgreSQL implementation. SQL lives in the backend modules only; the records are the
//! [`model`](crate::model)'s. `Store` is the union of one trait per concern ([`ScopeStore`],
//! [`ClientStore`], [`UserStore`], [`SessionStore`], [`RevocationStore`], [`ThrottleStore`],
//! [`KeyStore`], [`SystemSecretStore`], [`SignInStore`]); the conformance suite in the crate's tests runs every
//! method against both backends.

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
use crate::model::{
    AuthorizationCodeRecord, BrowserSession, Client, CodeRedemption, Consent, CutoffKind, Families,
    FamilyOwner, GrantType, IdTokenAlg, KeyAlgorithm, KeyRecord, KeyState, LoginAttempt,
    RefreshFamily, RefreshLookup, RefreshTokenRecord, Release, ReleasedAttempt, Scope, StoredKey,
    SubjectCutoff, ThrottleKey, User, normalize_username,
};

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

/// Marks the `email_normalized` of a user whose RFC 8265 form collides with another user's
/// (found when re-normalizing rows stored before migration 0003): `<form> #dup <id>`. It holds
/// spaces, which RFC 8265's UsernameCaseMapped never produces, so no typed name reaches it and
/// neither account answers to the ambiguous name until an operator deletes one of them and
/// runs `auth-server migrate` again.
pub(crate) fn duplicate_marker(normalized: &str, user_id: &str) -> String {
    format!("{normalized} #dup {user_id}")
}

/// Everything the authorization server stores: the union of the stores of each concern, plus
/// the schema. Both backends implement all of it and code holds an `Arc<dyn Store>` (a trait
/// object's methods include its supertraits', so callers import only `Store`); a component
/// that needs one concern only can take that trait instead.
#[async_trait]
pub trait Store:
    ScopeStore
    + ClientStore
    + UserStore
    + SessionStore
    + RevocationStore
    + ThrottleStore
    + KeyStore
    + SystemSecretStore
    + SignInStore
    + Send
    + Sync
    + 'static
{
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The scopes tokens can carry.
#[async_trait]
pub trait ScopeStore: Send + Sync {
    /// Inserts a scope; [`StoreError::AlreadyExists`] when the name is taken.
    async fn create_scope(&self, scope: &Scope) -> Result<(), StoreError>;
    /// Every scope, by name.
    async fn list_scopes(&self) -> Result<Vec<Scope>, StoreError>;
    /// Deletes a scope; `Ok(false)` when it did not exist, [`StoreError::ScopeInUse`] while a
    /// client is allowed it.
    async fn delete_scope(&self, name: &str) -> Result<bool, StoreError>;
}

/// Client applications.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Inserts a client and its scopes atomically; every scope must exist
    /// ([`StoreError::UnknownScope`]).
    async fn create_client(&self, client: &Client) -> Result<(), StoreError>;
    async fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError>;
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError>;
    /// `Ok(false)` when the client does not exist.
    async fn set_client_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError>;
    /// Replaces the secret's HMAC; `Ok(false)` when the client does not exist.
    async fn set_client_secret_hash(&self, id: &str, hash: &[u8]) -> Result<bool, StoreError>;
    /// Deletes the client and (cascading) its refresh families; `Ok(false)` when it did not
    /// exist.
    async fn delete_client(&self, id: &str) -> Result<bool, StoreError>;
}

/// End users.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a user and their permissions atomically; the e-mail is unique in its RFC 8265
    /// form ([`normalize_username`]).
    async fn create_user(&self, user: &User) -> Result<(), StoreError>;
    async fn find_user(&self, id: &str) -> Result<Option<User>, StoreError>;
    /// Looks a user up by e-mail, compared in its RFC 8265 form.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// Replaces the permissions; every scope must exist. `Ok(false)` when the user does not.
    async fn set_user_permissions(
        &self,
        id: &str,
        permissions: &BTreeSet<String>,
    ) -> Result<bool, StoreError>;
    /// `Ok(false)` when the user does not exist.
    async fn set_user_password_hash(&self, id: &str, hash: &str) -> Result<bool, StoreError>;
    /// `Ok(false)` when the user does not exist.
    async fn set_user_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError>;
    /// Sets the OIDC `name` and `email_verified` of a user; `Ok(false)` when the user does not
    /// exist.
    async fn set_user_profile(
        &self,
        id: &str,
        display_name: Option<&str>,
        email_verified: bool,
    ) -> Result<bool, StoreError>;
    /// Deletes the user and (cascading) their refresh families; `Ok(false)` when they did not
    /// exist.
    async fn delete_user(&self, id: &str) -> Result<bool, StoreError>;
}

/// Refresh-token families (sessions) and their tokens.
#[async_trait]
pub trait SessionStore: Send + Sync {
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
    /// Revokes every live family of `owner` (a client, a user, or a user at one client);
    /// returns how many.
    async fn revoke_refresh_families(
        &self,
        owner: FamilyOwner<'_>,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError>;
    /// The access tokens issued with the refresh tokens of `families`, unexpired at `now`:
    /// `(jti, exp)`.
    async fn family_access_tokens(
        &self,
        families: Families<'_>,
        now: i64,
    ) -> Result<Vec<(String, i64)>, StoreError>;
}

/// The deny-list of access tokens and the per-subject cutoffs: the source of truth that
/// introspection reads and the Redis copy is repaired from.
#[async_trait]
pub trait RevocationStore: Send + Sync {
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
}

/// The login lock-out counters.
#[async_trait]
pub trait ThrottleStore: Send + Sync {
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
}

/// Sign-in for people: browser sessions, authorization codes and consents. Times are unix
/// seconds.
#[async_trait]
pub trait SignInStore: Send + Sync {
    /// Inserts a session; its user must exist.
    async fn insert_browser_session(&self, session: &BrowserSession) -> Result<(), StoreError>;
    /// The session with `id_hash` if it is alive at `now`: before its `expires_at` and last
    /// seen after `idle_after` (now minus the idle lifetime).
    async fn find_browser_session(
        &self,
        id_hash: &[u8],
        now: i64,
        idle_after: i64,
    ) -> Result<Option<BrowserSession>, StoreError>;
    /// Sets `last_seen`.
    async fn touch_browser_session(&self, id_hash: &[u8], now: i64) -> Result<(), StoreError>;
    /// `Ok(false)` when there was no such session.
    async fn delete_browser_session(&self, id_hash: &[u8]) -> Result<bool, StoreError>;
    /// Ends every browser session of a user; returns how many.
    async fn delete_user_browser_sessions(&self, user_id: &str) -> Result<u64, StoreError>;
    /// Inserts a fresh authorization code.
    async fn insert_authorization_code(
        &self,
        code: &AuthorizationCodeRecord,
    ) -> Result<(), StoreError>;
    /// Marks the code used if it is unused and unexpired at `now`, atomically (one `UPDATE …
    /// WHERE used_at IS NULL … RETURNING`): of two concurrent redemptions one gets
    /// [`CodeRedemption::Fresh`]. A used code is [`CodeRedemption::Replayed`] while its row is
    /// kept; unknown and expired codes are [`CodeRedemption::Invalid`].
    async fn redeem_authorization_code(
        &self,
        code_hash: &[u8],
        now: i64,
    ) -> Result<CodeRedemption, StoreError>;
    /// Records what the code's exchange issued, for revocation on replay.
    async fn record_code_issue(
        &self,
        code_hash: &[u8],
        family_id: Option<&str>,
        access_jti: &str,
        access_expires_at: i64,
    ) -> Result<(), StoreError>;
    /// The consent of a user to a client, if any.
    async fn find_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Consent>, StoreError>;
    /// Adds `scopes` to the user's consent to the client (the union with what was allowed
    /// before), atomically.
    async fn add_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &BTreeSet<String>,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Withdraws a user's consent to one client, or to every client; returns how many.
    async fn delete_consents(
        &self,
        user_id: &str,
        client_id: Option<&str>,
    ) -> Result<u64, StoreError>;
    /// Every consent of a user, by client id.
    async fn list_consents(&self, user_id: &str) -> Result<Vec<Consent>, StoreError>;
    /// Deletes sessions that ended before `now` and codes that expired before `codes_before`.
    async fn purge_sign_in(&self, now: i64, codes_before: i64) -> Result<u64, StoreError>;
}

/// Signing keys: metadata and sealed private keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Inserts a key with its sealed private key; [`StoreError::AlreadyExists`] for a taken
    /// kid or a second active key of the same algorithm.
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
    /// Makes `next_kid` the active key of its algorithm and retires the active key of that
    /// algorithm (keys of other algorithms keep their state), atomically; `Ok(false)` and no
    /// change when `next_kid` is not a `next` key.
    async fn activate_key(&self, next_kid: &str, at: OffsetDateTime) -> Result<bool, StoreError>;
    /// Retires `kid`; `Ok(false)` when there is no such key.
    async fn retire_key(&self, kid: &str, at: OffsetDateTime) -> Result<bool, StoreError>;
}

/// Secrets sealed under `AUTH_SECRETS` other than private keys (the client-secret pepper).
#[async_trait]
pub trait SystemSecretStore: Send + Sync {
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

/// The space-separated URI list of a client row.
fn split_uris(joined: String) -> Vec<String> {
    joined.split_whitespace().map(str::to_owned).collect()
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
