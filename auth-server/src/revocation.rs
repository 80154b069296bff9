//! The access-token deny-list that resource servers read: revoked `jti`s are kept until the
//! token would have expired, in the store's table and, when Redis is configured, in the sorted
//! set `{QUEUE_PREFIX}:revoked_jti` (member = jti, score = exp in unix seconds). Each change is
//! also announced on the pub/sub channel of the same name so guards can refresh at once.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DenyListError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
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
}

impl DenyList {
    /// A deny-list in the store only.
    pub fn store_only(store: Arc<dyn Store>) -> DenyList {
        DenyList { store, redis: None }
    }

    /// A deny-list in the store and in Redis at `url` under `prefix`.
    pub async fn with_redis(
        store: Arc<dyn Store>,
        url: &str,
        prefix: &str,
    ) -> Result<DenyList, DenyListError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = client.get_connection_manager_with_config(config).await?;
        Ok(DenyList {
            store,
            redis: Some((conn, redis_key(prefix))),
        })
    }

    /// Denies `jti` until `expires_at` (unix seconds) and drops expired entries.
    pub async fn deny(&self, jti: &str, expires_at: i64, now: i64) -> Result<(), DenyListError> {
        self.store.deny_access_token(jti, expires_at, now).await?;
        if let Some((conn, key)) = &self.redis {
            let mut conn = conn.clone();
            redis::pipe()
                .atomic()
                .cmd("ZADD")
                .arg(key)
                .arg(expires_at)
                .arg(jti)
                .ignore()
                .cmd("ZREMRANGEBYSCORE")
                .arg(key)
                .arg("-inf")
                .arg(format!("({now}"))
                .ignore()
                .cmd("PUBLISH")
                .arg(key)
                .arg(jti)
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Whether `jti` is denied at `now` (from the store, the source of truth).
    pub async fn is_denied(&self, jti: &str, now: i64) -> Result<bool, StoreError> {
        self.store.is_access_token_denied(jti, now).await
    }
}
