//! Builds a fresh queue per test on either backend, and cleans up after it.
//!
//! Redis: `REDIS_URL` (default `redis://127.0.0.1:6379`), a random key prefix per test, every
//! key under it deleted on drop. When Redis is unreachable the test prints a skip message and
//! passes, unless CI is on (`test_support::ci::in_ci`), where it fails. SQLite: a randomly
//! named file in the temp dir, removed on drop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use job_queue::{QueueConfig, RedisQueue, ReliableQueue, SigningKey, SqliteQueue};

/// Short timings so retries and reaping happen within a test.
pub fn test_config() -> QueueConfig {
    QueueConfig {
        max_attempts: 3,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        poll_interval: Duration::from_millis(20),
    }
}

pub fn signing_key() -> SigningKey {
    SigningKey::new(b"conformance-test-signing-key-0123456789").unwrap()
}

pub fn other_key() -> SigningKey {
    SigningKey::new(b"a-different-key-an-attacker-might-use!!").unwrap()
}

enum Backend {
    Redis { url: String, prefix: String },
    Sqlite { url: String, path: PathBuf },
}

pub struct Harness {
    pub queue: Arc<dyn ReliableQueue>,
    backend: Backend,
}

impl Harness {
    pub async fn redis() -> Option<Harness> {
        let url = test_support::redis::reachable_url().await?;
        let prefix = format!("jqtest:{}", uuid::Uuid::new_v4().simple());
        let queue = RedisQueue::connect(&url, &prefix, signing_key(), test_config())
            .await
            .expect("connect to Redis");
        Some(Harness {
            queue: Arc::new(queue),
            backend: Backend::Redis { url, prefix },
        })
    }

    pub async fn sqlite() -> Harness {
        let path =
            std::env::temp_dir().join(format!("job-queue-{}.db", uuid::Uuid::new_v4().simple()));
        let url = format!("sqlite:{}", path.display());
        let queue = SqliteQueue::connect(&url, signing_key(), test_config())
            .await
            .expect("open SQLite");
        queue.migrate().await.expect("migrate");
        queue.migrate().await.expect("migrate twice");
        Harness {
            queue: Arc::new(queue),
            backend: Backend::Sqlite { url, path },
        }
    }

    pub fn q(&self) -> &dyn ReliableQueue {
        self.queue.as_ref()
    }

    /// Writes a raw job straight into the backing store, bypassing `enqueue` (what an attacker
    /// with access to Redis or the database file could do). `id` is the SQLite row id.
    pub async fn inject(&self, queue: &str, id: &str, raw: &str) {
        self.inject_bytes(queue, id, raw.as_bytes()).await;
    }

    /// [`inject`](Self::inject) of any bytes at the back of the ready queue: a raw `LPUSH` into
    /// `<prefix>:<queue>:ready` on Redis; on SQLite a row whose `job` is TEXT when the bytes
    /// are UTF-8 and a BLOB otherwise (what a foreign writer could store).
    pub async fn inject_bytes(&self, queue: &str, id: &str, raw: &[u8]) {
        self.inject_raw(queue, id.as_bytes(), raw, None).await;
    }

    /// Writes any bytes straight into `worker`'s processing area, as if it had reserved them.
    /// On SQLite `id` (the row's id) may be any bytes too: a BLOB when not UTF-8.
    pub async fn inject_held(&self, queue: &str, worker: &str, id: &[u8], raw: &[u8]) {
        self.inject_raw(queue, id, raw, Some(worker)).await;
    }

    /// Redis: adds a non-UTF-8 member to the reaper's worker and queue sets (names this code
    /// never writes). SQLite has no such sets: nothing to do.
    pub async fn inject_foreign_names(&self) {
        if let Backend::Redis { url, prefix } = &self.backend {
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            redis::pipe()
                .cmd("SADD")
                .arg(format!("{prefix}:_workers"))
                .arg(&b"\xff\xfe"[..])
                .ignore()
                .cmd("SADD")
                .arg(format!("{prefix}:_queues"))
                .arg(&b"\xfe"[..])
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        }
    }

    async fn inject_raw(&self, queue: &str, id: &[u8], raw: &[u8], held_by: Option<&str>) {
        match &self.backend {
            Backend::Redis { url, prefix } => {
                let client = redis::Client::open(url.as_str()).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                let key = match held_by {
                    Some(worker) => format!("{prefix}:{queue}:processing:{worker}"),
                    None => format!("{prefix}:{queue}:ready"),
                };
                let mut pipe = redis::pipe();
                pipe.cmd("LPUSH").arg(key).arg(raw).ignore();
                // What `enqueue` and `reserve` register, so the reaper looks at the entry.
                pipe.cmd("SADD")
                    .arg(format!("{prefix}:_queues"))
                    .arg(queue)
                    .ignore();
                if let Some(worker) = held_by {
                    pipe.cmd("SADD")
                        .arg(format!("{prefix}:_workers"))
                        .arg(worker)
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn).await.unwrap();
            }
            Backend::Sqlite { url, .. } => {
                let pool = sqlx::SqlitePool::connect(url).await.unwrap();
                let query = sqlx::query(
                    "INSERT INTO queue_jobs \
                     (queue, id, state, seq, job, attempt, enqueued_at, worker, reservation, reserved_at) \
                     VALUES ($1, $2, $3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM queue_jobs), $4, 0, 0, \
                             $5, $6, $7)",
                )
                .bind(queue);
                let query = match std::str::from_utf8(id) {
                    Ok(text) => query.bind(text.to_owned()),
                    Err(_) => query.bind(id.to_vec()),
                };
                let query = query.bind(if held_by.is_some() {
                    "processing"
                } else {
                    "ready"
                });
                let query = match std::str::from_utf8(raw) {
                    Ok(text) => query.bind(text.to_owned()),
                    Err(_) => query.bind(raw.to_vec()),
                };
                query
                    .bind(held_by)
                    .bind(held_by.map(|_| uuid::Uuid::new_v4().to_string()))
                    .bind(held_by.map(|_| 0i64))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        match &self.backend {
            Backend::Redis { url, prefix } => {
                // Synchronous, so the keys go even when the test panicked.
                test_support::redis::delete_prefix_blocking(url, prefix);
            }
            Backend::Sqlite { path, .. } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
        }
    }
}
