//! Opening the backend a deployment is configured for: Redis when a URL is given, otherwise the
//! embedded SQLite queue (schema applied on open). [`connect`] gives the whole queue and needs
//! the signing key; [`inspect`] gives only what an operator reads and clears, without it.

use std::sync::Arc;

use async_trait::async_trait;
use plumbing::connect::Backend;

use crate::{
    DeadJob, QueueConfig, QueueError, QueueStats, RedisQueue, ReliableQueue, SigningKey,
    SqliteQueue,
};

/// Opens Redis at `redis_url` (keys under `prefix`) or, without one, the SQLite queue at
/// `sqlite_url` (`sqlite:…`), migrating its schema.
pub async fn connect(
    redis_url: Option<&str>,
    sqlite_url: &str,
    prefix: &str,
    key: SigningKey,
    config: QueueConfig,
) -> Result<Arc<dyn ReliableQueue>, QueueError> {
    match redis_url {
        Some(url) => Ok(Arc::new(
            RedisQueue::connect(url, prefix, key, config).await?,
        )),
        None => {
            if Backend::of_url(sqlite_url) != Some(Backend::Sqlite) {
                return Err(QueueError::Config(format!(
                    "the embedded queue needs a sqlite: URL, not `{sqlite_url}`"
                )));
            }
            let queue = SqliteQueue::connect(sqlite_url, key, config).await?;
            queue.migrate().await?;
            Ok(Arc::new(queue))
        }
    }
}

/// What an operator reads and clears without the signing key: none of it signs or verifies
/// a job (a dead job's `verified` flag was recorded when it died).
#[async_trait]
pub trait QueueInspector: Send + Sync {
    /// Job counts of `queue`.
    async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError>;
    /// The dead list of `queue`, most recent first.
    async fn dead(&self, queue: &str) -> Result<Vec<DeadJob>, QueueError>;
    /// Empties the dead list of `queue`. Returns how many entries went.
    async fn purge_dead(&self, queue: &str) -> Result<u64, QueueError>;
}

/// Opens the same backend as [`connect`] for the [`QueueInspector`] operations only.
pub async fn inspect(
    redis_url: Option<&str>,
    sqlite_url: &str,
    prefix: &str,
) -> Result<Arc<dyn QueueInspector>, QueueError> {
    // The backends hold a key for the operations that sign or verify; none of those is
    // reachable through `Inspector`, so a random key that nothing ever checks stands in.
    let mut unused = [0u8; 32];
    aws_lc_rs::rand::fill(&mut unused)
        .map_err(|_| QueueError::Config("the random number generator failed".into()))?;
    let key = SigningKey::new(&unused)?;
    let queue = connect(redis_url, sqlite_url, prefix, key, QueueConfig::default()).await?;
    Ok(Arc::new(Inspector(queue)))
}

/// A queue seen through [`QueueInspector`] only.
struct Inspector(Arc<dyn ReliableQueue>);

#[async_trait]
impl QueueInspector for Inspector {
    async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        self.0.stats(queue).await
    }

    async fn dead(&self, queue: &str) -> Result<Vec<DeadJob>, QueueError> {
        self.0.dead(queue).await
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, QueueError> {
        self.0.purge_dead(queue).await
    }
}
