//! Queues, keys, HTTP fixtures and worker processes shared by the tests (the real auth server
//! and transcription-api are in `platform.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use job_queue::{QueueConfig, RedisQueue, ReliableQueue, SigningKey, SqliteQueue};
use uuid::Uuid;

pub const SIGNING_KEY: &str = "worker-tests-signing-key-0123456789abcdef";

pub fn signing_key() -> SigningKey {
    SigningKey::new(SIGNING_KEY.as_bytes()).unwrap()
}

/// Short timings so retries happen within a test.
pub fn queue_config() -> QueueConfig {
    QueueConfig {
        max_attempts: 3,
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_millis(400),
        poll_interval: Duration::from_millis(20),
    }
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("worker-it-{label}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A migrated SQLite queue in `dir/queue.db`, and its URL (for a worker process's
/// `QUEUE_DATABASE_URL`).
pub async fn sqlite_queue_in(dir: &TempDir, config: QueueConfig) -> (String, SqliteQueue) {
    let url = format!("sqlite:{}", dir.path().join("queue.db").display());
    let queue = SqliteQueue::connect(&url, signing_key(), config)
        .await
        .unwrap();
    queue.migrate().await.unwrap();
    (url, queue)
}

/// A fresh SQLite queue in its own directory.
pub struct TestQueue {
    pub queue: Arc<dyn ReliableQueue>,
    /// Holds the database file; removed on drop.
    _dir: TempDir,
}

impl TestQueue {
    pub async fn sqlite() -> TestQueue {
        TestQueue::sqlite_with(queue_config()).await
    }

    pub async fn sqlite_with(config: QueueConfig) -> TestQueue {
        let dir = TempDir::new("queue");
        let (_, queue) = sqlite_queue_in(&dir, config).await;
        TestQueue {
            queue: Arc::new(queue),
            _dir: dir,
        }
    }
}

/// A Redis queue under a random prefix (keys deleted on drop), or `None` with a message when
/// Redis is unreachable outside CI.
pub struct RedisTestQueue {
    pub queue: Arc<dyn ReliableQueue>,
    pub url: String,
    pub prefix: String,
}

impl RedisTestQueue {
    pub async fn connect() -> Option<RedisTestQueue> {
        let url = test_support::redis::reachable_url().await?;
        let prefix = format!("workertest:{}", Uuid::new_v4().simple());
        let queue = RedisQueue::connect(&url, &prefix, signing_key(), queue_config())
            .await
            .unwrap();
        Some(RedisTestQueue {
            queue: Arc::new(queue),
            url,
            prefix,
        })
    }
}

impl Drop for RedisTestQueue {
    fn drop(&mut self) {
        test_support::redis::delete_prefix_blocking(&self.url, &self.prefix);
    }
}

/// Serves `router` on 127.0.0.1:0 until the test's runtime ends.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// Waits until `check` holds, up to `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What the queue wrote into the Redis string `key` and when Redis will drop it, both in Unix
/// milliseconds: `(value, expires_at)`, read in one `MULTI` (`GET`, `PTTL`, `TIME`) so a
/// renewal cannot fall between them. The heartbeats and markers store the writer's clock
/// (`now_ms`) as their value, so `expires_at - value` is the lifetime the key was given (plus
/// the time the `SET` took to reach Redis; same machine, same clock). `None` while the key does
/// not exist; a panic when it exists without a TTL.
pub async fn redis_value_and_expiry(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> Option<(i64, i64)> {
    let (value, pttl, (seconds, micros)): (Option<i64>, i64, (i64, i64)) = redis::pipe()
        .atomic()
        .get(key)
        .cmd("PTTL")
        .arg(key)
        .cmd("TIME")
        .query_async(conn)
        .await
        .unwrap();
    let value = value?;
    assert!(pttl >= 0, "`{key}` has no TTL (PTTL {pttl})");
    // TIME runs after PTTL's time snapshot, so this is never earlier than the real expiry.
    Some((value, seconds * 1000 + micros / 1000 + pttl))
}

/// A connection of its own to the Redis at `url`, for reading what the worker wrote.
pub async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}
