//! Revoked access tokens: the [`RevocationList`] the guard asks on every request, answered
//! from memory, and two implementations.
//!
//! A revocation is either one token (its `jti`) or a "not valid before" cutoff for a subject
//! (`sub`, user events) or a client (`client_id`, client events): every token of that subject
//! or client issued at or before the cutoff (in ms) is revoked. A token's issue time in ms
//! comes from its `jti`, a UUIDv7 (RFC 9562 §5.7: the first 48 bits are unix ms), or for older
//! tokens from `iat` rounded up ([`issued_at_ms`]). [`Revocations::covers`] is the one rule,
//! shared by the guard and the auth server's introspection.
//!
//! - [`StaticRevocationList`]: an in-memory list filled with [`StaticRevocationList::insert`]
//!   and [`StaticRevocationList::insert_cutoff`] (tests, single-process set-ups, running
//!   without Redis).
//! - [`RedisRevocationList`]: a copy of the Redis sorted set `{prefix}:revoked_jti`
//!   (member = a jti or an encoded cutoff, see [`Revocation`]; score = until when it matters,
//!   in unix seconds) that a background task reloads every `poll_interval` (≤ 2 s), so a
//!   revocation reaches every instance within a few seconds. While Redis is unreachable the
//!   last loaded list stays in force.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plumbing::connect::{RedisTimeouts, connect_redis};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

/// Default key prefix of the deny-list (`transcribe:revoked_jti`): the deployment's `QUEUE_PREFIX`.
pub const DEFAULT_PREFIX: &str = "transcribe";
/// Longest allowed interval between two reloads of the Redis list.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long after its `exp` a revoked jti is still kept: the guard accepts a token up to its
/// leeway past `exp`, so the revocation must outlive `exp` by at least that much.
const RETENTION_AFTER_EXP: Duration = Duration::from_secs(120);

/// What a revocation check needs to know about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationSubject<'a> {
    pub jti: &'a str,
    pub sub: &'a str,
    pub client_id: &'a str,
    /// When the token was issued, unix milliseconds ([`issued_at_ms`]).
    pub issued_at_ms: u64,
}

impl<'a> RevocationSubject<'a> {
    /// The revocation view of a token with these claims (`iat` in unix seconds).
    pub fn new(jti: &'a str, sub: &'a str, client_id: &'a str, iat: u64) -> RevocationSubject<'a> {
        RevocationSubject {
            jti,
            sub,
            client_id,
            issued_at_ms: issued_at_ms(jti, iat),
        }
    }
}

/// A token's issue time in unix ms: the timestamp of its `jti` when that is a UUIDv7
/// (RFC 9562 §5.7, the first 48 bits), else `iat * 1000 + 999`, the latest instant of its
/// issuing second, so a cutoff in that second still covers it (tokens issued before jtis
/// became UUIDv7s).
pub fn issued_at_ms(jti: &str, iat: u64) -> u64 {
    uuid_v7_millis(jti).unwrap_or_else(|| iat.saturating_mul(1000).saturating_add(999))
}

/// The unix-ms timestamp of a hyphenated UUIDv7, `None` for anything else.
fn uuid_v7_millis(jti: &str) -> Option<u64> {
    let bytes = jti.as_bytes();
    let shape_ok = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    // Version nibble 7 (RFC 9562 §4.2) and variant 10xx (§4.1).
    if !shape_ok
        || bytes[14] != b'7'
        || !matches!(bytes[19], b'8' | b'9' | b'a' | b'b' | b'A' | b'B')
    {
        return None;
    }
    let hex = format!("{}{}", jti.get(0..8)?, jti.get(9..13)?);
    u64::from_str_radix(&hex, 16).ok()
}

/// Whose tokens a cutoff covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CutoffKind {
    /// Tokens whose `sub` is the subject (a user, or a client's own tokens).
    Subject,
    /// Tokens whose `client_id` is the subject.
    Client,
}

impl CutoffKind {
    /// The member prefix and store name: `sub` or `client`.
    pub fn as_str(self) -> &'static str {
        match self {
            CutoffKind::Subject => "sub",
            CutoffKind::Client => "client",
        }
    }

    pub fn parse(value: &str) -> Option<CutoffKind> {
        match value {
            "sub" => Some(CutoffKind::Subject),
            "client" => Some(CutoffKind::Client),
            _ => None,
        }
    }
}

/// One member of the deny-list sorted set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One token, by `jti` (a UUID, never containing `:`).
    Token(String),
    /// Every token of `subject` issued at or before `not_before_ms` (unix ms); encoded
    /// `sub:<ms>:<subject>` or `client:<ms>:<client_id>`.
    Cutoff {
        kind: CutoffKind,
        subject: String,
        not_before_ms: u64,
    },
}

impl Revocation {
    /// The sorted-set member.
    pub fn encode(&self) -> String {
        match self {
            Revocation::Token(jti) => jti.clone(),
            Revocation::Cutoff {
                kind,
                subject,
                not_before_ms,
            } => format!("{}:{not_before_ms}:{subject}", kind.as_str()),
        }
    }

    /// Reads a member; anything that is not a well-formed cutoff is a jti. The subject is
    /// everything after the second `:`, so ids may contain `:`.
    pub fn parse(member: &str) -> Revocation {
        let mut parts = member.splitn(3, ':');
        if let (Some(kind), Some(ms), Some(subject)) = (parts.next(), parts.next(), parts.next())
            && let (Some(kind), Ok(not_before_ms)) = (CutoffKind::parse(kind), ms.parse::<u64>())
            && !subject.is_empty()
        {
            return Revocation::Cutoff {
                kind,
                subject: subject.to_owned(),
                not_before_ms,
            };
        }
        Revocation::Token(member.to_owned())
    }
}

/// A set of revocations held in memory, each with until when it matters (unix seconds).
#[derive(Debug, Default, Clone)]
pub struct Revocations {
    /// jti → until.
    tokens: HashMap<String, u64>,
    /// (kind, subject) → (largest cutoff in ms, until).
    cutoffs: HashMap<(CutoffKind, String), (u64, u64)>,
}

impl Revocations {
    pub fn new() -> Revocations {
        Revocations::default()
    }

    /// Adds a revocation that matters until `until` (unix seconds). For a cutoff, the larger
    /// one per subject is kept (it covers everything the smaller one did).
    pub fn insert(&mut self, revocation: Revocation, until: u64) {
        match revocation {
            Revocation::Token(jti) => {
                let entry = self.tokens.entry(jti).or_insert(until);
                *entry = (*entry).max(until);
            }
            Revocation::Cutoff {
                kind,
                subject,
                not_before_ms,
            } => {
                let entry = self
                    .cutoffs
                    .entry((kind, subject))
                    .or_insert((not_before_ms, until));
                *entry = (entry.0.max(not_before_ms), entry.1.max(until));
            }
        }
    }

    /// Drops what stopped mattering before `horizon` (unix seconds).
    fn retain_after(&mut self, horizon: u64) {
        self.tokens.retain(|_, until| *until >= horizon);
        self.cutoffs.retain(|_, (_, until)| *until >= horizon);
    }

    /// Number of revocations held (jtis and cutoffs).
    pub fn len(&self) -> usize {
        self.tokens.len() + self.cutoffs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn cutoff(&self, kind: CutoffKind, subject: &str) -> Option<u64> {
        // Keyed by owned String; a lookup allocates once per kind, cheap next to a request.
        self.cutoffs
            .get(&(kind, subject.to_owned()))
            .map(|(ms, _)| *ms)
    }

    /// Whether this set revokes `token`: see [`is_revoked_by`].
    pub fn covers(&self, token: &RevocationSubject<'_>) -> bool {
        is_revoked_by(
            token,
            self.tokens.contains_key(token.jti),
            self.cutoff(CutoffKind::Subject, token.sub),
            self.cutoff(CutoffKind::Client, token.client_id),
        )
    }
}

/// The revocation rule (RFC 7009 §2.1 and the subject/client events of the auth server): a
/// token is revoked when its `jti` is denied, or when it was issued at or before the cutoff
/// (unix ms) of its `sub` or of its `client_id`. The guard and introspection both call this.
pub fn is_revoked_by(
    token: &RevocationSubject<'_>,
    jti_denied: bool,
    subject_cutoff_ms: Option<u64>,
    client_cutoff_ms: Option<u64>,
) -> bool {
    jti_denied
        || [subject_cutoff_ms, client_cutoff_ms]
            .into_iter()
            .flatten()
            .any(|cutoff| token.issued_at_ms <= cutoff)
}

/// A deny-list of tokens, consulted on every request without I/O.
pub trait RevocationList: Send + Sync + 'static {
    /// Whether `token` has been revoked, by its `jti` or by a cutoff of its `sub` or
    /// `client_id` ([`is_revoked_by`]).
    fn is_revoked(&self, token: &RevocationSubject<'_>) -> bool;
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// An in-memory deny-list.
#[derive(Debug, Default)]
pub struct StaticRevocationList {
    revoked: RwLock<Revocations>,
}

impl StaticRevocationList {
    pub fn new() -> StaticRevocationList {
        StaticRevocationList::default()
    }

    fn add(&self, revocation: Revocation, until: u64) {
        let horizon = unix_now().saturating_sub(RETENTION_AFTER_EXP.as_secs());
        let mut revoked = match self.revoked.write() {
            Ok(revoked) => revoked,
            Err(poisoned) => poisoned.into_inner(),
        };
        revoked.retain_after(horizon);
        revoked.insert(revocation, until);
    }

    /// Revokes `jti` until its token's `exp` (unix seconds) has safely passed; entries past
    /// that are dropped as new ones arrive.
    pub fn insert(&self, jti: impl Into<String>, exp: u64) {
        self.add(Revocation::Token(jti.into()), exp);
    }

    /// Revokes every token of `subject` (a `sub` or a `client_id`, per `kind`) issued at or
    /// before `not_before_ms` (unix ms), until `until` (unix seconds, after which all of them
    /// have expired). A larger cutoff for the same subject replaces a smaller one.
    pub fn insert_cutoff(
        &self,
        kind: CutoffKind,
        subject: impl Into<String>,
        not_before_ms: u64,
        until: u64,
    ) {
        let revocation = Revocation::Cutoff {
            kind,
            subject: subject.into(),
            not_before_ms,
        };
        self.add(revocation, until);
    }

    /// Number of revocations held (jtis and cutoffs).
    pub fn len(&self) -> usize {
        match self.revoked.read() {
            Ok(revoked) => revoked.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RevocationList for StaticRevocationList {
    fn is_revoked(&self, token: &RevocationSubject<'_>) -> bool {
        match self.revoked.read() {
            Ok(revoked) => revoked.covers(token),
            Err(poisoned) => poisoned.into_inner().covers(token),
        }
    }
}

/// Why the Redis deny-list could not be set up or reloaded.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("invalid revocation list settings: {0}")]
    Config(String),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis could not be reached; names the host, never the URL.
    #[error(transparent)]
    Connect(#[from] plumbing::connect::ConnectError),
}

/// Settings of a [`RedisRevocationList`].
#[derive(Debug, Clone)]
pub struct RedisRevocationConfig {
    /// `redis://…` (`REDIS_URL`).
    pub url: String,
    /// Key prefix: the sorted set is `{prefix}:revoked_jti`.
    pub prefix: String,
    /// Reload period, at most [`MAX_POLL_INTERVAL`].
    pub poll_interval: Duration,
}

impl RedisRevocationConfig {
    /// Defaults: prefix `auth`, reload every second.
    pub fn new(url: impl Into<String>) -> RedisRevocationConfig {
        RedisRevocationConfig {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            poll_interval: Duration::from_secs(1),
        }
    }

    pub fn with_prefix(mut self, prefix: impl Into<String>) -> RedisRevocationConfig {
        self.prefix = prefix.into();
        self
    }
}

struct RedisInner {
    key: String,
    conn: ConnectionManager,
    revoked: RwLock<Arc<Revocations>>,
    /// Whether the last reload failed, so an outage is logged once, not every poll.
    failing: std::sync::atomic::AtomicBool,
}

/// The Redis deny-list, mirrored in memory; cheap to clone. The background reload stops when
/// the last clone is dropped.
#[derive(Clone)]
pub struct RedisRevocationList {
    inner: Arc<RedisInner>,
}

impl std::fmt::Debug for RedisRevocationList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRevocationList")
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

impl RedisRevocationList {
    /// Connects, loads the list once (failing if that fails) and starts the reload task.
    pub async fn connect(
        config: RedisRevocationConfig,
    ) -> Result<RedisRevocationList, RevocationError> {
        let prefix_ok = !config.prefix.is_empty()
            && config.prefix.len() <= 64
            && config
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
        if !prefix_ok {
            return Err(RevocationError::Config(format!(
                "invalid key prefix `{}`",
                config.prefix
            )));
        }
        if config.poll_interval.is_zero() || config.poll_interval > MAX_POLL_INTERVAL {
            return Err(RevocationError::Config(format!(
                "poll interval must be between 0 and {} s",
                MAX_POLL_INTERVAL.as_secs()
            )));
        }
        let timeouts = RedisTimeouts {
            connect: Duration::from_secs(2),
            response: Duration::from_secs(2),
            retries: 1,
        };
        let (_, conn) = connect_redis(&config.url, timeouts).await?;
        let list = RedisRevocationList {
            inner: Arc::new(RedisInner {
                key: format!("{}:revoked_jti", config.prefix),
                conn,
                revoked: RwLock::new(Arc::new(Revocations::new())),
                failing: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        list.reload().await?;
        tokio::spawn(poll_loop(Arc::downgrade(&list.inner), config.poll_interval));
        Ok(list)
    }

    /// The sorted set this list mirrors.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// Reloads the list from Redis now; on failure the previous list stays in force. Returns
    /// the number of revocations held (jtis and cutoffs).
    pub async fn reload(&self) -> Result<usize, RevocationError> {
        let min = unix_now().saturating_sub(RETENTION_AFTER_EXP.as_secs());
        let mut conn = self.inner.conn.clone();
        let members: Vec<(String, f64)> = conn
            .zrangebyscore_withscores(&self.inner.key, min, "+inf")
            .await?;
        let mut revoked = Revocations::new();
        for (member, until) in members {
            // Scores are whole unix seconds written by the auth server.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let until = until.max(0.0) as u64;
            revoked.insert(Revocation::parse(&member), until);
        }
        let count = revoked.len();
        match self.inner.revoked.write() {
            Ok(mut guard) => *guard = Arc::new(revoked),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(revoked),
        }
        Ok(count)
    }
}

impl RevocationList for RedisRevocationList {
    fn is_revoked(&self, token: &RevocationSubject<'_>) -> bool {
        read(&self.inner.revoked).covers(token)
    }
}

async fn poll_loop(inner: Weak<RedisInner>, every: Duration) {
    use std::sync::atomic::Ordering;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let list = RedisRevocationList { inner };
        match list.reload().await {
            Ok(_) => {
                if list.inner.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(key = %list.inner.key, "revocation list reloads again");
                }
            }
            Err(err) => {
                if !list.inner.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(key = %list.inner.key, error = %err, "reloading the revocation list failed; keeping the last known list");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token known by its jti only (sub and client that carry no cutoff).
    fn by_jti(jti: &str) -> RevocationSubject<'_> {
        RevocationSubject::new(jti, "nobody", "no-client", 0)
    }

    #[test]
    fn static_list_forgets_long_expired_ids_only() {
        let list = StaticRevocationList::new();
        let now = unix_now();
        list.insert("old", now - 3600);
        list.insert("just-expired", now - 10);
        list.insert("live", now + 600);
        assert!(
            !list.is_revoked(&by_jti("old")),
            "pruned on the next insert"
        );
        assert!(
            list.is_revoked(&by_jti("just-expired")),
            "still inside the leeway"
        );
        assert!(list.is_revoked(&by_jti("live")));
        assert!(!list.is_revoked(&by_jti("other")));
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn issued_at_ms_reads_a_uuid_v7_and_rounds_iat_up_otherwise() {
        // 0x0193_8f3c_2a41 ms = 1_733_002_013_249.
        let v7 = "01938f3c-2a41-7cc1-9a3e-6f1d2b3c4d5e";
        assert_eq!(issued_at_ms(v7, 1), 0x0193_8f3c_2a41);
        assert_eq!(issued_at_ms(&v7.to_uppercase(), 1), 0x0193_8f3c_2a41);
        for not_v7 in [
            "01938f3c-2a41-4cc1-9a3e-6f1d2b3c4d5e", // version 4
            "01938f3c-2a41-7cc1-ca3e-6f1d2b3c4d5e", // wrong variant
            "01938f3c2a417cc19a3e6f1d2b3c4d5e",     // not hyphenated
            "01938f3c-2a41-7cc1-9a3e-6f1d2b3c4d5g", // not hex
            "anything",
            "",
        ] {
            assert_eq!(
                issued_at_ms(not_v7, 1_700_000_000),
                1_700_000_000_999,
                "{not_v7}"
            );
        }
    }

    #[test]
    fn members_encode_and_parse_back() {
        let cases = [
            Revocation::Token("0193a0c4-7b1e-7000-8000-000000000001".to_owned()),
            Revocation::Cutoff {
                kind: CutoffKind::Subject,
                subject: "user-1".to_owned(),
                not_before_ms: 1_733_000_000_123,
            },
            Revocation::Cutoff {
                kind: CutoffKind::Client,
                subject: "urn:client:with:colons".to_owned(),
                not_before_ms: 7,
            },
        ];
        for revocation in cases {
            assert_eq!(Revocation::parse(&revocation.encode()), revocation);
        }
        assert_eq!(
            Revocation::parse("sub:5:a:b").encode(),
            "sub:5:a:b",
            "the subject keeps its colons"
        );
        for jti_like in ["sub:notanumber:x", "sub:5:", "user:5:x", "plain"] {
            assert_eq!(
                Revocation::parse(jti_like),
                Revocation::Token(jti_like.to_owned())
            );
        }
    }

    #[test]
    fn a_cutoff_revokes_tokens_issued_up_to_it_and_keeps_the_largest() {
        let list = StaticRevocationList::new();
        let until = unix_now() + 600;
        list.insert_cutoff(CutoffKind::Subject, "alice", 2_000, until);
        list.insert_cutoff(CutoffKind::Subject, "alice", 1_000, until);
        list.insert_cutoff(CutoffKind::Client, "app", 5_000, until);
        let token = |sub: &'static str, client: &'static str, ms: u64| RevocationSubject {
            jti: "j",
            sub,
            client_id: client,
            issued_at_ms: ms,
        };
        assert!(list.is_revoked(&token("alice", "other", 1_500)), "max kept");
        assert!(
            list.is_revoked(&token("alice", "other", 2_000)),
            "at the cutoff"
        );
        assert!(
            !list.is_revoked(&token("alice", "other", 2_001)),
            "after it"
        );
        assert!(
            !list.is_revoked(&token("bob", "other", 1_000)),
            "other subject"
        );
        assert!(
            list.is_revoked(&token("bob", "app", 4_999)),
            "client cutoff"
        );
        assert!(!list.is_revoked(&token("bob", "app", 5_001)));
        assert!(
            !list.is_revoked(&token("app", "other", 1)),
            "a client cutoff does not match `sub`"
        );
    }
}
