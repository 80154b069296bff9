//! Revocation of access tokens already issued, written where resource servers look for it:
//! the store's tables (the source of truth, read by introspection) and, when Redis is
//! configured, the sorted set `{QUEUE_PREFIX}:revoked_jti` (member = a jti, or a cutoff encoded
//! by [`token_guard::Revocation`]; score = until when it matters, unix seconds). Each change is
//! also announced on the pub/sub channel of the same name so guards can refresh at once.
//!
//! Every event that must end tokens goes through one method here, used by the grants and the
//! CLI alike (docs/decisions.md, "Revocation reach"):
//! - [`DenyList::deny`]: one access token (RFC 7009 §2.1);
//! - [`DenyList::revoke_family`]: a refresh family (revoked at `/oauth/revoke`, or on reuse)
//!   and the access tokens issued from it (RFC 7009 §2.1: revoking a refresh token SHOULD
//!   invalidate the access tokens of the same grant);
//! - [`DenyList::revoke_user`], [`DenyList::revoke_client`]: every family of a user or client
//!   and a "not valid before" cutoff on every access token of that `sub` or `client_id`;
//! - [`DenyList::revoke_families`]: the families of a user at one client (a withdrawn consent)
//!   and the access tokens issued from them, no cutoff.

use std::sync::Arc;
use std::time::Duration;

use plumbing::connect::{RedisTimeouts, connect_redis};
use redis::aio::ConnectionManager;
use time::OffsetDateTime;
use token_guard::{CutoffKind, Revocation, RevocationSubject, is_revoked_by};

use crate::model::{Families, FamilyOwner, SubjectCutoff};
use crate::store::{Store, StoreError};

/// Leeway resource servers allow on `exp`: retired signing keys stay published this much
/// longer than the tokens they signed.
pub const VERIFIER_LEEWAY: Duration = Duration::from_secs(60);

/// How often a running server copies the store's revocations into Redis again
/// (the deny-list's `republish`).
pub const REPUBLISH_INTERVAL: Duration = Duration::from_secs(5);

/// How long past the `exp` of the last token it covers a revocation is kept: the largest
/// leeway a guard may be configured with ([`token_guard::MAX_LEEWAY`]), so no verifier can
/// still accept a token whose revocation was already dropped.
pub const RETENTION_AFTER_EXP: Duration = token_guard::MAX_LEEWAY;

/// Why a revocation could not be written (or the deny-list opened).
#[derive(Debug, thiserror::Error)]
pub enum DenyListError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Connect(#[from] plumbing::connect::ConnectError),
}

/// The Redis key (and channel) of the deny-list for a deployment prefix.
pub fn redis_key(prefix: &str) -> String {
    format!("{prefix}:revoked_jti")
}

/// Writes revocations where resource servers look for them.
#[derive(Clone)]
pub struct DenyList {
    store: Arc<dyn Store>,
    redis: Option<(ConnectionManager, String)>,
    /// Longest access-token lifetime in use: how long a cutoff must be kept.
    access_token_ttl: Duration,
}

/// What a user or client event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// Refresh families (sessions) revoked.
    pub sessions: u64,
    /// The cutoff set, unix ms: their tokens issued at or before it are revoked.
    pub not_before_ms: i64,
}

impl DenyList {
    /// A deny-list in the store only.
    pub fn store_only(store: Arc<dyn Store>, access_token_ttl: Duration) -> DenyList {
        DenyList {
            store,
            redis: None,
            access_token_ttl,
        }
    }

    /// A deny-list in the store and in Redis at `url` under `prefix`.
    pub async fn with_redis(
        store: Arc<dyn Store>,
        url: &str,
        prefix: &str,
        access_token_ttl: Duration,
    ) -> Result<DenyList, DenyListError> {
        let timeouts = RedisTimeouts {
            connect: Duration::from_secs(2),
            response: Duration::from_secs(5),
            retries: 2,
        };
        let (_, conn) = connect_redis(url, timeouts).await?;
        Ok(DenyList {
            store,
            redis: Some((conn, redis_key(prefix))),
            access_token_ttl,
        })
    }

    /// Copies every revocation still in force from the store (the source of truth) into
    /// Redis. A revocation is written to the store first; when its Redis write then fails, the
    /// caller gets an error and a retry finds nothing left to revoke, so a running server calls
    /// this periodically ([`REPUBLISH_INTERVAL`]) to repair such gaps. No-op without Redis.
    pub async fn republish(&self, now: i64) -> Result<(), DenyListError> {
        if self.redis.is_none() {
            return Ok(());
        }
        let in_force = self.in_force_reader().in_force(now).await?;
        let mut members = in_force.denied;
        for cutoff in in_force.cutoffs {
            let member = Revocation::Cutoff {
                kind: cutoff.kind,
                subject: cutoff.subject,
                not_before_ms: u64::try_from(cutoff.not_before_ms).unwrap_or_default(),
            };
            members.push((member.encode(), cutoff.expires_at));
        }
        // Guards poll the set; announcing thousands of old entries would only wake them.
        self.write_redis(&members, now, false).await
    }

    /// A reader of what this deny-list holds.
    pub fn in_force_reader(&self) -> Revocations {
        Revocations {
            store: self.store.clone(),
        }
    }

    /// Adds `members` (member, until) to the Redis set, drops expired ones and announces it.
    async fn publish(&self, members: &[(String, i64)], now: i64) -> Result<(), DenyListError> {
        self.write_redis(members, now, true).await
    }

    /// `publish`, announcing each member on the channel only when `announce`.
    async fn write_redis(
        &self,
        members: &[(String, i64)],
        now: i64,
        announce: bool,
    ) -> Result<(), DenyListError> {
        let Some((conn, key)) = &self.redis else {
            return Ok(());
        };
        if members.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (member, until) in members {
            pipe.cmd("ZADD").arg(key).arg(until).arg(member).ignore();
        }
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(key)
            .arg("-inf")
            .arg(format!("({}", purge_before(now)))
            .ignore();
        for (member, _) in members.iter().filter(|_| announce) {
            pipe.cmd("PUBLISH").arg(key).arg(member).ignore();
        }
        let mut conn = conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Denies `jti`, whose token expires at `expires_at` (unix seconds), and drops entries
    /// whose tokens are past their `exp` by more than [`RETENTION_AFTER_EXP`].
    pub async fn deny(&self, jti: &str, expires_at: i64, now: i64) -> Result<(), DenyListError> {
        metrics::counter!("oauth_revocations_total", "kind" => "access_token").increment(1);
        self.store
            .deny_access_token(jti, expires_at, purge_before(now))
            .await?;
        self.publish(&[(jti.to_owned(), expires_at)], now).await
    }

    /// Denies every unexpired access token issued from `families`.
    async fn deny_family_tokens(
        &self,
        families: Families<'_>,
        now: i64,
    ) -> Result<(), DenyListError> {
        let tokens = self
            .store
            .family_access_tokens(families, purge_before(now))
            .await?;
        for (jti, expires_at) in &tokens {
            self.store
                .deny_access_token(jti, *expires_at, purge_before(now))
                .await?;
        }
        self.publish(&tokens, now).await
    }

    /// Revokes a refresh family and denies the access tokens issued from it (RFC 7009 §2.1).
    /// `Ok(false)` when it did not exist or was already revoked (its tokens are denied again,
    /// which is harmless).
    pub async fn revoke_family(
        &self,
        family_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, DenyListError> {
        metrics::counter!("oauth_revocations_total", "kind" => "refresh_family").increment(1);
        let revoked = self.store.revoke_refresh_family(family_id, at).await?;
        self.deny_family_tokens(Families::One(family_id), at.unix_timestamp())
            .await?;
        Ok(revoked)
    }

    /// Revokes the refresh families of `owner` and denies the access tokens issued from them
    /// (RFC 7009 §2.1), without a cutoff: the owner's other tokens stay valid. Withdrawing a
    /// user's consent to a client ends that user's sessions at that client this way. Returns
    /// how many families were revoked.
    pub async fn revoke_families(&self, owner: FamilyOwner<'_>) -> Result<u64, DenyListError> {
        let at = OffsetDateTime::now_utc();
        // Families first, so no rotation starts after the tokens are listed.
        let sessions = self.store.revoke_refresh_families(owner, at).await?;
        metrics::counter!("oauth_revocations_total", "kind" => "refresh_family")
            .increment(sessions);
        self.deny_family_tokens(Families::Of(owner), at.unix_timestamp())
            .await?;
        Ok(sessions)
    }

    /// Ends every session and access token of a user (disabled, deleted, password reset,
    /// `tokens revoke --user`): revokes their refresh families, denies the access tokens
    /// issued from them and sets a cutoff on `sub` at the current time.
    pub async fn revoke_user(&self, user_id: &str) -> Result<Revoked, DenyListError> {
        self.revoke_owner(
            FamilyOwner::User(user_id),
            CutoffKind::Subject,
            user_id,
            Duration::ZERO,
        )
        .await
    }

    /// Ends every session and access token of a client (disabled, deleted,
    /// `tokens revoke --client`): its refresh families, the access tokens issued from them and
    /// a cutoff on `client_id` at the current time.
    pub async fn revoke_client(&self, client_id: &str) -> Result<Revoked, DenyListError> {
        self.revoke_owner(
            FamilyOwner::Client(client_id),
            CutoffKind::Client,
            client_id,
            Duration::ZERO,
        )
        .await
    }

    /// [`revoke_client`](Self::revoke_client) for a client that was just disabled or
    /// deleted: running servers authenticate it from their client cache for up to
    /// `cache_ttl` more, so the cutoff lies that far ahead and covers what they issue meanwhile.
    pub async fn revoke_removed_client(
        &self,
        client_id: &str,
        cache_ttl: Duration,
    ) -> Result<Revoked, DenyListError> {
        self.revoke_owner(
            FamilyOwner::Client(client_id),
            CutoffKind::Client,
            client_id,
            cache_ttl,
        )
        .await
    }

    async fn revoke_owner(
        &self,
        owner: FamilyOwner<'_>,
        kind: CutoffKind,
        subject: &str,
        ahead: Duration,
    ) -> Result<Revoked, DenyListError> {
        let label = match kind {
            CutoffKind::Subject => "user",
            CutoffKind::Client => "client",
        };
        metrics::counter!("oauth_revocations_total", "kind" => label).increment(1);
        let at = OffsetDateTime::now_utc();
        let now = at.unix_timestamp();
        // Families first, so no rotation starts after the tokens are listed.
        let sessions = self.store.revoke_refresh_families(owner, at).await?;
        self.deny_family_tokens(Families::Of(owner), now).await?;
        // The cutoff is the wall-clock time of the event, taken after the families are gone
        // (plus `ahead` where servers may still issue from cached state).
        let cut = OffsetDateTime::now_utc() + ahead;
        let not_before_ms =
            i64::try_from(cut.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let ttl = i64::try_from(self.access_token_ttl.as_secs()).unwrap_or(i64::MAX);
        let leeway = i64::try_from(RETENTION_AFTER_EXP.as_secs()).unwrap_or(i64::MAX);
        let cutoff = SubjectCutoff {
            kind,
            subject: subject.to_owned(),
            not_before_ms,
            // Rounded up to whole seconds, then every covered token's `exp` plus the leeway.
            expires_at: (not_before_ms / 1000 + 1)
                .saturating_add(ttl)
                .saturating_add(leeway),
        };
        self.store.revoke_subject(&cutoff, now).await?;
        let member = Revocation::Cutoff {
            kind,
            subject: subject.to_owned(),
            not_before_ms: u64::try_from(not_before_ms).unwrap_or_default(),
        };
        self.publish(&[(member.encode(), cutoff.expires_at)], now)
            .await?;
        Ok(Revoked {
            sessions,
            not_before_ms,
        })
    }

    /// Whether `token` is revoked at `now`, by its jti or a cutoff of its `sub` or
    /// `client_id` (from the store, the source of truth; the rule is
    /// [`token_guard::is_revoked_by`], as in every resource server).
    pub async fn is_revoked(
        &self,
        token: &RevocationSubject<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        // A denied jti is stored with its token's `exp`; verifiers accept the token up to the
        // leeway past that, so the denial holds as long.
        let denied = self
            .store
            .is_access_token_denied(token.jti, purge_before(now))
            .await?;
        let cutoff = |ms: Option<i64>| ms.map(|ms| u64::try_from(ms).unwrap_or_default());
        let sub = self
            .store
            .subject_cutoff(CutoffKind::Subject, token.sub, now)
            .await?;
        let client = self
            .store
            .subject_cutoff(CutoffKind::Client, token.client_id, now)
            .await?;
        Ok(is_revoked_by(token, denied, cutoff(sub), cutoff(client)))
    }
}

/// Reads the revocations in force from the store, the source of truth, for resource servers in
/// the same process that cannot read the Redis mirror; cheap to clone.
#[derive(Clone)]
pub struct Revocations {
    store: Arc<dyn Store>,
}

/// Every revocation in force at one moment, as a resource server applies them
/// ([`token_guard::is_revoked_by`]).
#[derive(Debug, Clone, Default)]
pub struct RevocationsInForce {
    /// Denied access tokens, `(jti, exp)` (unix seconds), kept until
    /// [`RETENTION_AFTER_EXP`] past `exp`.
    pub denied: Vec<(String, i64)>,
    /// The "not valid before" cutoffs of users and clients.
    pub cutoffs: Vec<SubjectCutoff>,
}

impl Revocations {
    /// What is in force at `now` (unix seconds).
    pub async fn in_force(&self, now: i64) -> Result<RevocationsInForce, StoreError> {
        Ok(RevocationsInForce {
            denied: self.store.denied_access_tokens(purge_before(now)).await?,
            cutoffs: self.store.revoked_subjects(now).await?,
        })
    }
}

/// Denied jtis are stored with their token's `exp`; a verifier may accept a token up to
/// [`RETENTION_AFTER_EXP`] past it, so an entry counts (and is kept) until then.
pub fn purge_before(now: i64) -> i64 {
    now.saturating_sub(i64::try_from(RETENTION_AFTER_EXP.as_secs()).unwrap_or(i64::MAX))
}
