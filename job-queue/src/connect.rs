//! Opening the backend a deployment is configured for: Redis when a URL is given, otherwise the
//! embedded SQLite queue (schema applied on open).

use std::sync::Arc;

use crate::{QueueConfig, QueueError, RedisQueue, ReliableQueue, SigningKey, SqliteQueue};

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
            if !sqlite_url.starts_with("sqlite:") {
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
