//! [`ReliableQueue`] on Redis lists (production backend).
//!
//! # Key layout
//!
//! Every key starts with the deployment prefix `P` (`QUEUE_PREFIX`), so deployments and
//! parallel tests share one Redis without colliding. For a queue `Q` and a worker `W`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:Q:ready` | list | signed jobs; `LPUSH` at the left (back), consumed from the right (front) |
//! | `P:Q:processing:W` | list | jobs reserved by worker `W` (`BLMOVE ready → processing RIGHT LEFT`) |
//! | `P:Q:delayed` | zset | jobs waiting for a retry, scored by due time (Unix ms) |
//! | `P:Q:dead` | list | [`DeadJob`] JSON, newest at the left |
//! | `P:Q:ids` | hash | pending job ids (duplicate suppression) |
//! | `P:_heartbeat:W` | string | worker `W` is alive while this key exists (`SET … PX ttl`) |
//! | `P:_workers` | set | workers that may hold processing lists (for the reaper) |
//! | `P:_queues` | set | queue names ever enqueued to (for the reaper) |
//! | `P:_marker:N` | string | marker `N` (`set_marker`: `SET … NX PX ttl`) |
//!
//! Queue and worker names cannot start with `_`, so the `P:_…` keys never clash with a queue.
//!
//! # Round trips per job (steady state)
//!
//! * enqueue: 1 (`EVALSHA`: `HSETNX ids` + `LPUSH ready` + `SADD _queues`);
//! * reserve: 1 (one pipeline: `SADD _workers`, `BLMOVE`/`LMOVE`, `SADD _workers`);
//! * ack: 1 (`EVALSHA`: `LREM processing` + `HDEL ids`);
//! * so 3 per successful job; a retry adds 1 for `fail` and its share of a `promote_due` call.
//!
//! Heartbeats (1 per worker per interval), `reap` and `promote_due` are per worker or per
//! queue, not per job. The first call of each Lua script after a Redis restart costs two extra
//! round trips (`NOSCRIPT`, `SCRIPT LOAD`).
//!
//! Blocking `reserve` calls each use a dedicated connection from a small pool, since a blocked
//! `BLMOVE` stalls every other command on its connection; everything else shares one
//! multiplexed, auto-reconnecting connection. Due times use the client's clock.
//!
//! Entries are read as bytes: one that cannot be opened (oversized, not UTF-8, not JSON, wrong
//! shape, bad signature) is moved from the processing list to the dead list with the reason, by
//! `reserve` and by `held`, so no entry, whatever its bytes, stays in a processing list or
//! stalls a consumer, the held-jobs audit or the reaper (whose scripts move bytes unread).
//!
//! If a `reserve` future is dropped while `BLMOVE` is blocked (e.g. at shutdown), a job moved
//! at that instant stays in the worker's processing list until the worker stops heartbeating
//! (or calls `retire`) and the reaper returns it, or the worker finds it with `held` and
//! releases it; nothing is lost. The same holds for a `BLMOVE` whose reply is lost.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use plumbing::connect::{RedisTimeouts, connect_redis};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Script};

use crate::envelope::{
    Envelope, EnvelopeError, JobId, SigningKey, dead_text, now_ms, peek_unverified_bytes,
};
use crate::error::QueueError;
use crate::queue::{
    DeadJob, Enqueued, FailOutcome, NewJob, QueueConfig, QueueStats, ReliableQueue, Reserved,
    buried_reason, check_marker, check_name, exhausted_reason,
};

/// Idle blocking connections kept for reuse.
const MAX_IDLE_BLOCKING: usize = 32;
/// Below this, a wait is done as a non-blocking `LMOVE` (a `BLMOVE` timeout that rounds to 0
/// would block forever).
const MIN_BLOCKING_WAIT: Duration = Duration::from_millis(10);
/// Delayed jobs moved per `promote_due` script call.
const PROMOTE_BATCH: usize = 500;

/// KEYS: ids, ready, queues. ARGV: id, job, queue name.
const ENQUEUE: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return 1";

/// KEYS: processing, ids. ARGV: job, id.
const ACK: &str = r"
local n = redis.call('LREM', KEYS[1], -1, ARGV[1])
if n > 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
return n";

/// Moves a held job out of a processing list. KEYS: processing, target.
/// ARGV: held job, value to store, mode (`back` = LPUSH, `front` = RPUSH, or a zset score).
const TAKE_FROM_PROCESSING: &str = r"
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then return 0 end
if ARGV[3] == 'back' then
  redis.call('LPUSH', KEYS[2], ARGV[2])
elseif ARGV[3] == 'front' then
  redis.call('RPUSH', KEYS[2], ARGV[2])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
end
return 1";

/// KEYS: delayed, ready. ARGV: now (ms), batch size.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, job in ipairs(due) do
  redis.call('ZREM', KEYS[1], job)
  redis.call('LPUSH', KEYS[2], job)
end
return #due";

/// KEYS: heartbeat, workers, then (processing, ready) per queue. ARGV: worker.
/// Returns -1 when the worker is alive, else the number of jobs moved.
const REAP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local moved = 0
for i = 3, #KEYS, 2 do
  while redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT') do moved = moved + 1 end
end
redis.call('SREM', KEYS[2], ARGV[1])
return moved";

/// KEYS: ready, delayed, dead, workers. ARGV: processing-key prefix (`P:Q:processing:`).
/// One atomic snapshot: counted in two steps, a job moving between lists (a reap, a release)
/// could be missed by both counts and the queue look empty while it is not.
/// The per-worker processing keys are derived from the workers set inside the script, so they
/// cannot be declared up front; the keys all share the deployment prefix.
const STATS: &str = r"
local processing = 0
for _, worker in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  processing = processing + redis.call('LLEN', ARGV[1] .. worker)
end
return {redis.call('LLEN', KEYS[1]), processing, redis.call('ZCARD', KEYS[2]), redis.call('LLEN', KEYS[3])}";

/// KEYS: dead, ids. ARGV: pairs of (entry, id to release or '').
const PURGE: &str = r"
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) > 0 then
    n = n + 1
    if ARGV[i + 1] ~= '' then redis.call('HDEL', KEYS[2], ARGV[i + 1]) end
  end
end
return n";

/// KEYS: dead, ready. ARGV: dead entry, job to enqueue.
const REQUEUE: &str = r"
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1";

/// [`ReliableQueue`] on Redis. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct RedisQueue {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    /// Idle connections for blocking `BLMOVE`s, one per concurrent `reserve`.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    prefix: String,
    key: SigningKey,
    config: QueueConfig,
    scripts: Scripts,
}

struct Scripts {
    enqueue: Script,
    ack: Script,
    take: Script,
    promote: Script,
    reap: Script,
    purge: Script,
    requeue: Script,
    stats: Script,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.inner.prefix)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// Connects to `url` (`redis://…`) with all keys under `prefix` (`QUEUE_PREFIX`, 1–64
    /// characters of `[A-Za-z0-9_.:-]`).
    pub async fn connect(
        url: &str,
        prefix: &str,
        key: SigningKey,
        config: QueueConfig,
    ) -> Result<Self, QueueError> {
        config.validate()?;
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
        if !prefix_ok {
            return Err(QueueError::Config(format!(
                "invalid queue prefix `{prefix}`"
            )));
        }
        let timeouts = RedisTimeouts {
            connect: Duration::from_secs(2),
            response: Duration::from_secs(5),
            retries: 2,
        };
        let (client, conn) = connect_redis(url, timeouts).await?;
        Ok(RedisQueue {
            inner: Arc::new(Inner {
                client,
                conn,
                blocking: Mutex::new(Vec::new()),
                prefix: prefix.to_owned(),
                key,
                config,
                scripts: Scripts {
                    enqueue: Script::new(ENQUEUE),
                    ack: Script::new(ACK),
                    take: Script::new(TAKE_FROM_PROCESSING),
                    promote: Script::new(PROMOTE),
                    reap: Script::new(REAP),
                    purge: Script::new(PURGE),
                    requeue: Script::new(REQUEUE),
                    stats: Script::new(STATS),
                },
            }),
        })
    }

    /// The key prefix of this queue (every key it touches starts with `prefix:`).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The Redis key of `queue`'s ready list.
    pub fn ready_key(&self, queue: &str) -> String {
        format!("{}:{queue}:ready", self.inner.prefix)
    }

    fn queue_key(&self, queue: &str, part: &str) -> String {
        format!("{}:{queue}:{part}", self.inner.prefix)
    }

    fn processing_key(&self, queue: &str, worker: &str) -> String {
        format!("{}:{queue}:processing:{worker}", self.inner.prefix)
    }

    fn marker_key(&self, name: &str) -> String {
        format!("{}:_marker:{name}", self.inner.prefix)
    }

    /// Moves a held job to the dead list with `reason`.
    async fn to_dead(
        &self,
        job: &Reserved,
        attempt: u32,
        reason: String,
    ) -> Result<FailOutcome, QueueError> {
        let entry = encode_dead(&DeadJob {
            id: job.envelope.id.to_string(),
            kind: Some(job.envelope.kind.clone()),
            attempt,
            reason,
            died_at: now_ms(),
            verified: true,
            job: job.receipt.clone(),
        })?;
        let dead_key = self.queue_key(&job.queue, "dead");
        let moved = self
            .take_from_processing(
                &job.queue,
                &job.worker_id,
                job.receipt.as_bytes(),
                &dead_key,
                &entry,
                "back",
            )
            .await?;
        Ok(if moved {
            FailOutcome::Dead
        } else {
            FailOutcome::NotHeld
        })
    }

    fn heartbeat_key(&self, worker: &str) -> String {
        format!("{}:_heartbeat:{worker}", self.inner.prefix)
    }

    fn workers_key(&self) -> String {
        format!("{}:_workers", self.inner.prefix)
    }

    fn queues_key(&self) -> String {
        format!("{}:_queues", self.inner.prefix)
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// One reservation attempt: moves the front job into the worker's processing list.
    fn take_pipeline(&self, queue: &str, worker: &str, wait: Option<Duration>) -> redis::Pipeline {
        let workers = self.workers_key();
        let ready = self.queue_key(queue, "ready");
        let processing = self.processing_key(queue, worker);
        let mut pipe = redis::pipe();
        // Registered before (so a crash right after the move is reaped) and after (so a reaper
        // that ran while we were blocked does not leave the moved job unregistered).
        pipe.sadd(&workers, worker).ignore();
        match wait {
            Some(wait) => {
                let millis = wait.as_millis().max(1);
                let seconds = format!("{}.{:03}", millis / 1000, millis % 1000);
                pipe.cmd("BLMOVE")
                    .arg(&ready)
                    .arg(&processing)
                    .arg("RIGHT")
                    .arg("LEFT")
                    .arg(seconds);
            }
            None => {
                pipe.cmd("LMOVE")
                    .arg(&ready)
                    .arg(&processing)
                    .arg("RIGHT")
                    .arg("LEFT");
            }
        }
        pipe.sadd(&workers, worker).ignore();
        pipe
    }

    async fn take_now(&self, queue: &str, worker: &str) -> Result<Option<Vec<u8>>, QueueError> {
        let (job,): (Option<Vec<u8>>,) = self
            .take_pipeline(queue, worker, None)
            .query_async(&mut self.conn())
            .await?;
        Ok(job)
    }

    async fn take_blocking(
        &self,
        queue: &str,
        worker: &str,
        wait: Duration,
    ) -> Result<Option<Vec<u8>>, QueueError> {
        let mut conn = match self.pop_blocking_conn() {
            Some(conn) => conn,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(None);
                self.inner
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?
            }
        };
        let pipe = self.take_pipeline(queue, worker, Some(wait));
        // Redis answers when the BLMOVE times out; the extra margin only guards against a
        // server that stopped answering.
        let answer = tokio::time::timeout(
            wait + Duration::from_secs(5),
            pipe.query_async::<(Option<Vec<u8>>,)>(&mut conn),
        )
        .await;
        match answer {
            Ok(Ok((job,))) => {
                self.push_blocking_conn(conn);
                Ok(job)
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(QueueError::Redis(redis::RedisError::from(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "BLMOVE got no answer"),
            ))),
        }
    }

    fn pop_blocking_conn(&self) -> Option<MultiplexedConnection> {
        self.inner
            .blocking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }

    fn push_blocking_conn(&self, conn: MultiplexedConnection) {
        let mut idle = self
            .inner
            .blocking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE_BLOCKING {
            idle.push(conn);
        }
    }

    /// Moves a held job from a processing list to `target` (see [`TAKE_FROM_PROCESSING`]).
    async fn take_from_processing(
        &self,
        queue: &str,
        worker: &str,
        held: &[u8],
        target: &str,
        value: &str,
        mode: &str,
    ) -> Result<bool, QueueError> {
        let moved: i64 = self
            .inner
            .scripts
            .take
            .key(self.processing_key(queue, worker))
            .key(target)
            .arg(held)
            .arg(value)
            .arg(mode)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(moved > 0)
    }

    /// Sends a held job that cannot be opened (see [`SigningKey::open_bytes`]) to the dead list.
    async fn reject(
        &self,
        queue: &str,
        worker: &str,
        raw: &[u8],
        error: &EnvelopeError,
    ) -> Result<(), QueueError> {
        let claimed = peek_unverified_bytes(raw);
        tracing::warn!(queue, worker, claimed_id = ?claimed.id, reason = %error, "rejected job moved to the dead list");
        let entry = DeadJob {
            id: claimed.id.unwrap_or_else(|| JobId::random().to_string()),
            kind: claimed.kind,
            attempt: claimed.attempt.unwrap_or(0),
            reason: error.to_string(),
            died_at: now_ms(),
            verified: false,
            job: dead_text(raw),
        };
        let entry = encode_dead(&entry)?;
        self.take_from_processing(
            queue,
            worker,
            raw,
            &self.queue_key(queue, "dead"),
            &entry,
            "back",
        )
        .await?;
        Ok(())
    }

    /// The dead list as stored, each raw entry with its parsed form (when readable).
    async fn dead_entries(
        &self,
        queue: &str,
    ) -> Result<Vec<(Vec<u8>, Option<DeadJob>)>, QueueError> {
        let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(self.queue_key(queue, "dead"))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await?;
        Ok(raw
            .into_iter()
            .map(|entry| {
                let parsed = serde_json::from_slice::<DeadJob>(&entry).ok();
                (entry, parsed)
            })
            .collect())
    }
}

fn encode_dead(entry: &DeadJob) -> Result<String, QueueError> {
    serde_json::to_string(entry).map_err(|e| QueueError::Envelope(EnvelopeError::Encode(e)))
}

#[async_trait]
impl ReliableQueue for RedisQueue {
    async fn enqueue_job(&self, queue: &str, job: NewJob) -> Result<Enqueued, QueueError> {
        check_name("queue", queue)?;
        let id = job.id.unwrap_or_else(JobId::random);
        let wire = self
            .inner
            .key
            .seal(&Envelope::new(id.clone(), job.kind, job.payload))?;
        let added: i64 = self
            .inner
            .scripts
            .enqueue
            .key(self.queue_key(queue, "ids"))
            .key(self.queue_key(queue, "ready"))
            .key(self.queues_key())
            .arg(id.as_str())
            .arg(wire)
            .arg(queue)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(Enqueued {
            id,
            duplicate: added == 0,
        })
    }

    async fn reserve(
        &self,
        queue: &str,
        worker_id: &str,
        wait: Duration,
    ) -> Result<Option<Reserved>, QueueError> {
        check_name("queue", queue)?;
        check_name("worker", worker_id)?;
        let deadline = Instant::now() + wait;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let raw = if remaining < MIN_BLOCKING_WAIT {
                self.take_now(queue, worker_id).await?
            } else {
                self.take_blocking(queue, worker_id, remaining).await?
            };
            let Some(raw) = raw else {
                return Ok(None);
            };
            match self.inner.key.open_bytes(raw.clone()) {
                Ok((envelope, receipt)) => {
                    return Ok(Some(Reserved {
                        queue: queue.to_owned(),
                        worker_id: worker_id.to_owned(),
                        envelope,
                        receipt,
                    }));
                }
                Err(error) => self.reject(queue, worker_id, &raw, &error).await?,
            }
        }
    }

    async fn ack(&self, job: &Reserved) -> Result<bool, QueueError> {
        let removed: i64 = self
            .inner
            .scripts
            .ack
            .key(self.processing_key(&job.queue, &job.worker_id))
            .key(self.queue_key(&job.queue, "ids"))
            .arg(&job.receipt)
            .arg(job.envelope.id.as_str())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(removed > 0)
    }

    async fn bury(&self, job: &Reserved, error: &str) -> Result<FailOutcome, QueueError> {
        let attempt = job.envelope.attempt.saturating_add(1);
        self.to_dead(job, attempt, buried_reason(error)).await
    }

    async fn set_marker(&self, name: &str, ttl: Duration) -> Result<bool, QueueError> {
        check_marker(name)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = redis::cmd("SET")
            .arg(self.marker_key(name))
            .arg(now_ms())
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.conn())
            .await?;
        Ok(set.is_some())
    }

    async fn has_marker(&self, name: &str) -> Result<bool, QueueError> {
        check_marker(name)?;
        let exists: bool = redis::cmd("EXISTS")
            .arg(self.marker_key(name))
            .query_async(&mut self.conn())
            .await?;
        Ok(exists)
    }

    async fn fail(&self, job: &Reserved, error: &str) -> Result<FailOutcome, QueueError> {
        let config = &self.inner.config;
        let attempt = job.envelope.attempt.saturating_add(1);
        if attempt >= config.max_attempts {
            return self
                .to_dead(job, attempt, exhausted_reason(config.max_attempts, error))
                .await;
        }
        let delay = config.backoff(attempt);
        let retry = Envelope {
            attempt,
            ..job.envelope.clone()
        };
        let wire = self.inner.key.seal(&retry)?;
        let due = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let delayed_key = self.queue_key(&job.queue, "delayed");
        let moved = self
            .take_from_processing(
                &job.queue,
                &job.worker_id,
                job.receipt.as_bytes(),
                &delayed_key,
                &wire,
                &due.to_string(),
            )
            .await?;
        Ok(if moved {
            FailOutcome::Retrying { attempt, delay }
        } else {
            FailOutcome::NotHeld
        })
    }

    async fn release(&self, job: &Reserved) -> Result<bool, QueueError> {
        let ready = self.queue_key(&job.queue, "ready");
        self.take_from_processing(
            &job.queue,
            &job.worker_id,
            job.receipt.as_bytes(),
            &ready,
            &job.receipt,
            "front",
        )
        .await
    }

    async fn held(&self, queue: &str, worker_id: &str) -> Result<Vec<Reserved>, QueueError> {
        check_name("queue", queue)?;
        check_name("worker", worker_id)?;
        let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(self.processing_key(queue, worker_id))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await?;
        // Newest reservation at the left.
        let mut held = Vec::with_capacity(raw.len());
        for entry in raw.into_iter().rev() {
            match self.inner.key.open_bytes(entry.clone()) {
                Ok((envelope, receipt)) => held.push(Reserved {
                    queue: queue.to_owned(),
                    worker_id: worker_id.to_owned(),
                    envelope,
                    receipt,
                }),
                Err(error) => self.reject(queue, worker_id, &entry, &error).await?,
            }
        }
        Ok(held)
    }

    async fn heartbeat(&self, worker_id: &str, ttl: Duration) -> Result<(), QueueError> {
        check_name("worker", worker_id)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        redis::cmd("SET")
            .arg(self.heartbeat_key(worker_id))
            .arg(now_ms())
            .arg("PX")
            .arg(ttl_ms)
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn retire(&self, worker_id: &str) -> Result<(), QueueError> {
        check_name("worker", worker_id)?;
        redis::cmd("DEL")
            .arg(self.heartbeat_key(worker_id))
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn reap(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn();
        let (workers, queues): (Vec<Vec<u8>>, Vec<Vec<u8>>) = redis::pipe()
            .smembers(self.workers_key())
            .smembers(self.queues_key())
            .query_async(&mut conn)
            .await?;
        // Read as bytes: a member this code did not write (not UTF-8) is skipped, never an
        // error that would stop every later reap.
        let names = |members: Vec<Vec<u8>>| {
            members
                .into_iter()
                .filter_map(|m| String::from_utf8(m).ok())
                .collect::<Vec<_>>()
        };
        let (workers, queues) = (names(workers), names(queues));
        if workers.is_empty() {
            return Ok(0);
        }
        let mut alive_check = redis::pipe();
        for worker in &workers {
            alive_check.exists(self.heartbeat_key(worker));
        }
        let alive: Vec<bool> = alive_check.query_async(&mut conn).await?;
        let mut moved_total = 0u64;
        for (worker, alive) in workers.iter().zip(alive) {
            if alive {
                continue;
            }
            // The script checks the heartbeat again, atomically with the moves.
            let mut invocation = self.inner.scripts.reap.prepare_invoke();
            invocation
                .key(self.heartbeat_key(worker))
                .key(self.workers_key());
            for queue in &queues {
                invocation
                    .key(self.processing_key(queue, worker))
                    .key(self.queue_key(queue, "ready"));
            }
            let moved: i64 = invocation.arg(worker).invoke_async(&mut conn).await?;
            if moved > 0 {
                tracing::info!(worker, jobs = moved, "returned jobs of a dead worker");
                moved_total += u64::try_from(moved).unwrap_or(0);
            }
        }
        Ok(moved_total)
    }

    async fn promote_due(&self, queue: &str) -> Result<u64, QueueError> {
        check_name("queue", queue)?;
        let mut total = 0u64;
        loop {
            let moved: i64 = self
                .inner
                .scripts
                .promote
                .key(self.queue_key(queue, "delayed"))
                .key(self.queue_key(queue, "ready"))
                .arg(now_ms())
                .arg(PROMOTE_BATCH)
                .invoke_async(&mut self.conn())
                .await?;
            let moved = u64::try_from(moved).unwrap_or(0);
            total += moved;
            if moved < PROMOTE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    async fn dead(&self, queue: &str) -> Result<Vec<DeadJob>, QueueError> {
        check_name("queue", queue)?;
        Ok(self
            .dead_entries(queue)
            .await?
            .into_iter()
            .map(|(raw, parsed)| {
                parsed.unwrap_or_else(|| DeadJob {
                    id: String::new(),
                    kind: None,
                    attempt: 0,
                    reason: "unreadable dead-list entry".into(),
                    died_at: 0,
                    verified: false,
                    job: dead_text(&raw),
                })
            })
            .collect())
    }

    async fn requeue_dead(&self, queue: &str, id: &str) -> Result<bool, QueueError> {
        check_name("queue", queue)?;
        let entries = self.dead_entries(queue).await?;
        let matching = || {
            entries
                .iter()
                .filter_map(|(raw, parsed)| parsed.as_ref().map(|p| (raw, p)))
                .filter(|(_, parsed)| parsed.id == id)
        };
        let Some((raw, dead)) = matching()
            .find(|(_, parsed)| parsed.verified)
            .or_else(|| matching().next())
        else {
            return Ok(false);
        };
        if !dead.verified {
            return Err(QueueError::NotRequeueable {
                id: id.to_owned(),
                reason: dead.reason.clone(),
            });
        }
        let mut envelope =
            self.inner
                .key
                .open(&dead.job)
                .map_err(|e| QueueError::NotRequeueable {
                    id: id.to_owned(),
                    reason: e.to_string(),
                })?;
        envelope.attempt = 0;
        let wire = self.inner.key.seal(&envelope)?;
        let moved: i64 = self
            .inner
            .scripts
            .requeue
            .key(self.queue_key(queue, "dead"))
            .key(self.queue_key(queue, "ready"))
            .arg(raw)
            .arg(wire)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(moved > 0)
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, QueueError> {
        check_name("queue", queue)?;
        let entries = self.dead_entries(queue).await?;
        if entries.is_empty() {
            return Ok(0);
        }
        let mut invocation = self.inner.scripts.purge.prepare_invoke();
        invocation
            .key(self.queue_key(queue, "dead"))
            .key(self.queue_key(queue, "ids"));
        for (raw, parsed) in &entries {
            let release = parsed
                .as_ref()
                .filter(|p| p.verified)
                .map_or("", |p| p.id.as_str());
            invocation.arg(raw).arg(release);
        }
        let purged: i64 = invocation.invoke_async(&mut self.conn()).await?;
        Ok(u64::try_from(purged).unwrap_or(0))
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        check_name("queue", queue)?;
        let (ready, processing, delayed, dead): (u64, u64, u64, u64) = self
            .inner
            .scripts
            .stats
            .key(self.queue_key(queue, "ready"))
            .key(self.queue_key(queue, "delayed"))
            .key(self.queue_key(queue, "dead"))
            .key(self.workers_key())
            .arg(self.processing_key(queue, ""))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(QueueStats {
            ready,
            processing,
            delayed,
            dead,
        })
    }

    async fn ping(&self) -> Result<(), QueueError> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }
}
