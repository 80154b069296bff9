//! Revoked access tokens: the [`RevocationList`] the guard asks on every request, answered
//! from memory, and two implementations.
//!
//! - [`StaticRevocationList`]: an in-memory list filled with [`StaticRevocationList::insert`]
//!   (tests, single-process set-ups, running without Redis).
//! - [`RedisRevocationList`]: a copy of the Redis sorted set `{prefix}:revoked_jti`
//!   (member = jti, score = the token's `exp` in unix seconds) that a background task reloads
//!   every `poll_interval` (≤ 2 s), so a revocation reaches every instance within a few
//!   seconds. While Redis is unreachable the last loaded list stays in force.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Default key prefix of the deny-list (`transcribe:revoked_jti`): the deployment's `QUEUE_PREFIX`.
pub const DEFAULT_PREFIX: &str = "transcribe";
/// Longest allowed interval between two reloads of the Redis list.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long after its `exp` a revoked jti is still kept: the guard accepts a token up to its
/// leeway past `exp`, so the revocation must outlive `exp` by at least that much.
const RETENTION_AFTER_EXP: Duration = Duration::from_secs(120);

/// A deny-list of token ids, consulted on every request without I/O.
pub trait RevocationList: Send + Sync + 'static {
    /// Whether the token with this `jti` has been revoked.
    fn is_revoked(&self, jti: &str) -> bool;
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// An in-memory deny-list.
#[derive(Debug, Default)]
pub struct StaticRevocationList {
    /// jti → `exp` of the revoked token (unix seconds).
    revoked: RwLock<HashMap<String, u64>>,
}

impl StaticRevocationList {
    pub fn new() -> StaticRevocationList {
        StaticRevocationList::default()
    }

    /// Revokes `jti` until its token's `exp` (unix seconds) has safely passed; entries past
    /// that are dropped as new ones arrive.
    pub fn insert(&self, jti: impl Into<String>, exp: u64) {
        let horizon = unix_now().saturating_sub(RETENTION_AFTER_EXP.as_secs());
        let mut revoked = match self.revoked.write() {
            Ok(revoked) => revoked,
            Err(poisoned) => poisoned.into_inner(),
        };
        revoked.retain(|_, exp| *exp >= horizon);
        revoked.insert(jti.into(), exp);
    }

    /// Number of revoked ids held.
    pub fn len(&self) -> usize {
        self.revoked.read().map(|r| r.len()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RevocationList for StaticRevocationList {
    fn is_revoked(&self, jti: &str) -> bool {
        match self.revoked.read() {
            Ok(revoked) => revoked.contains_key(jti),
            Err(poisoned) => poisoned.into_inner().contains_key(jti),
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
    revoked: RwLock<Arc<HashSet<String>>>,
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
        let client = redis::Client::open(config.url.as_str())?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = client
            .get_connection_manager_with_config(manager_config)
            .await?;
        let list = RedisRevocationList {
            inner: Arc::new(RedisInner {
                key: format!("{}:revoked_jti", config.prefix),
                conn,
                revoked: RwLock::new(Arc::new(HashSet::new())),
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
    /// the number of revoked ids held.
    pub async fn reload(&self) -> Result<usize, RevocationError> {
        let min = unix_now().saturating_sub(RETENTION_AFTER_EXP.as_secs());
        let mut conn = self.inner.conn.clone();
        let members: Vec<String> = conn.zrangebyscore(&self.inner.key, min, "+inf").await?;
        let revoked: HashSet<String> = members.into_iter().collect();
        let count = revoked.len();
        match self.inner.revoked.write() {
            Ok(mut guard) => *guard = Arc::new(revoked),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(revoked),
        }
        Ok(count)
    }
}

impl RevocationList for RedisRevocationList {
    fn is_revoked(&self, jti: &str) -> bool {
        let set = match self.inner.revoked.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        set.contains(jti)
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

    #[test]
    fn static_list_forgets_long_expired_ids_only() {
        let list = StaticRevocationList::new();
        let now = unix_now();
        list.insert("old", now - 3600);
        list.insert("just-expired", now - 10);
        list.insert("live", now + 600);
        assert!(!list.is_revoked("old"), "pruned on the next insert");
        assert!(list.is_revoked("just-expired"), "still inside the leeway");
        assert!(list.is_revoked("live"));
        assert!(!list.is_revoked("other"));
        assert_eq!(list.len(), 2);
    }
}
