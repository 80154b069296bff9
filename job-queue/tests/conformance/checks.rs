//! The contract of `ReliableQueue`, one function per rule, run against every backend.

use std::collections::HashSet;
use std::time::Duration;

use job_queue::{
    Envelope, FailOutcome, JobId, NewJob, QueueError, QueueStats, ReliableQueue, Reserved,
};
use serde_json::json;

use crate::harness::{Harness, other_key};

const LONG_TTL: Duration = Duration::from_secs(60);

async fn live_worker(q: &dyn ReliableQueue, worker: &str) {
    q.heartbeat(worker, LONG_TTL).await.unwrap();
}

async fn take(q: &dyn ReliableQueue, queue: &str, worker: &str) -> Reserved {
    q.reserve(queue, worker, Duration::ZERO)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("expected a job in `{queue}`"))
}

async fn stats(q: &dyn ReliableQueue, queue: &str) -> QueueStats {
    q.stats(queue).await.unwrap()
}

fn counts(ready: u64, processing: u64, delayed: u64, dead: u64) -> QueueStats {
    QueueStats {
        ready,
        processing,
        delayed,
        dead,
    }
}

/// Calls `promote_due` until `n` jobs are ready (the backoff is milliseconds in tests).
async fn promote_until_ready(q: &dyn ReliableQueue, queue: &str, n: u64) {
    for _ in 0..500 {
        q.promote_due(queue).await.unwrap();
        if stats(q, queue).await.ready >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("delayed jobs of `{queue}` never became ready");
}

/// Calls `reap` until it returns jobs (heartbeat TTLs are milliseconds in tests).
async fn reap_until_moved(q: &dyn ReliableQueue) -> u64 {
    for _ in 0..500 {
        let moved = q.reap().await.unwrap();
        if moved > 0 {
            return moved;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the reaper never returned the jobs of the expired worker");
}

pub async fn fifo_order_per_queue(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    let mut alpha = Vec::new();
    for n in 0..5 {
        alpha.push(q.enqueue("alpha", "test", json!({ "n": n })).await.unwrap());
    }
    let beta = q
        .enqueue("beta", "test", json!({ "n": 100 }))
        .await
        .unwrap();

    for (n, expected) in alpha.iter().enumerate() {
        let job = take(q, "alpha", "w1").await;
        assert_eq!(&job.envelope.id, expected);
        assert_eq!(job.envelope.payload, json!({ "n": n }));
        assert_eq!(job.envelope.kind, "test");
        assert_eq!(job.envelope.attempt, 0);
        assert!(q.ack(&job).await.unwrap());
    }
    assert!(
        q.reserve("alpha", "w1", Duration::ZERO)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(take(q, "beta", "w1").await.envelope.id, beta);
}

pub async fn ack_removes_the_job(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    q.enqueue("jobs", "test", json!({})).await.unwrap();
    assert_eq!(stats(q, "jobs").await, counts(1, 0, 0, 0));
    let job = take(q, "jobs", "w1").await;
    assert_eq!(stats(q, "jobs").await, counts(0, 1, 0, 0));
    assert!(q.ack(&job).await.unwrap());
    assert_eq!(stats(q, "jobs").await, counts(0, 0, 0, 0));
    assert!(!q.ack(&job).await.unwrap(), "a second ack finds nothing");
    assert!(
        q.reserve("jobs", "w1", Duration::ZERO)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn fail_retries_after_backoff(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    let id = q.enqueue("jobs", "test", json!({ "x": 1 })).await.unwrap();
    let job = take(q, "jobs", "w1").await;

    let outcome = q.fail(&job, "engine crashed").await.unwrap();
    assert!(
        matches!(outcome, FailOutcome::Retrying { attempt: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(
        stats(q, "jobs").await,
        counts(0, 0, 1, 0),
        "waits in the delayed set"
    );
    assert!(
        q.reserve("jobs", "w1", Duration::ZERO)
            .await
            .unwrap()
            .is_none()
    );

    promote_until_ready(q, "jobs", 1).await;
    assert_eq!(stats(q, "jobs").await, counts(1, 0, 0, 0));
    let again = take(q, "jobs", "w1").await;
    assert_eq!(again.envelope.id, id);
    assert_eq!(again.envelope.attempt, 1);
    assert_eq!(again.envelope.payload, json!({ "x": 1 }));
    assert_eq!(again.envelope.enqueued_at, job.envelope.enqueued_at);
    assert!(q.ack(&again).await.unwrap());
    assert!(
        matches!(q.fail(&again, "late").await.unwrap(), FailOutcome::NotHeld),
        "failing an acked job changes nothing"
    );
}

/// Fails a job until it dies (test config: `max_attempts` = 3).
async fn fail_until_dead(q: &dyn ReliableQueue, queue: &str, worker: &str) -> JobId {
    let id = q
        .enqueue(queue, "test", json!({ "doomed": true }))
        .await
        .unwrap();
    for attempt in 1..=3u32 {
        let job = take(q, queue, worker).await;
        assert_eq!(job.envelope.attempt, attempt - 1);
        let outcome = q.fail(&job, &format!("boom {attempt}")).await.unwrap();
        if attempt < 3 {
            assert!(
                matches!(outcome, FailOutcome::Retrying { .. }),
                "{outcome:?}"
            );
            promote_until_ready(q, queue, 1).await;
        } else {
            assert_eq!(outcome, FailOutcome::Dead);
        }
    }
    id
}

pub async fn exhausted_jobs_go_to_the_dead_list(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    let id = fail_until_dead(q, "jobs", "w1").await;
    assert_eq!(stats(q, "jobs").await, counts(0, 0, 0, 1));
    let dead = q.dead("jobs").await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id.as_str());
    assert_eq!(dead[0].kind.as_deref(), Some("test"));
    assert_eq!(dead[0].attempt, 3);
    assert!(dead[0].verified);
    assert!(dead[0].reason.contains("boom 3"), "{}", dead[0].reason);
    assert!(dead[0].died_at > 0);
    assert!(
        q.reserve("jobs", "w1", Duration::ZERO)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn dead_jobs_can_be_requeued_and_purged(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    let first = fail_until_dead(q, "jobs", "w1").await;
    let second = fail_until_dead(q, "jobs", "w1").await;
    let listed: Vec<String> = q
        .dead("jobs")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(
        listed,
        [second.to_string(), first.to_string()],
        "most recent first"
    );

    assert!(!q.requeue_dead("jobs", "no-such-job").await.unwrap());
    assert!(q.requeue_dead("jobs", first.as_str()).await.unwrap());
    assert!(
        !q.requeue_dead("jobs", first.as_str()).await.unwrap(),
        "only once"
    );
    assert_eq!(stats(q, "jobs").await, counts(1, 0, 0, 1));
    let job = take(q, "jobs", "w1").await;
    assert_eq!(job.envelope.id, first);
    assert_eq!(job.envelope.attempt, 0, "a requeued job starts over");
    assert!(q.ack(&job).await.unwrap());

    assert_eq!(q.purge_dead("jobs").await.unwrap(), 1);
    assert_eq!(stats(q, "jobs").await, counts(0, 0, 0, 0));
    assert!(q.dead("jobs").await.unwrap().is_empty());
    let again = q
        .enqueue_job(
            "jobs",
            NewJob::new("test", json!({})).with_id(second.clone()),
        )
        .await
        .unwrap();
    assert!(!again.duplicate, "purging releases the id");
}

pub async fn reaper_returns_jobs_of_expired_workers(h: &Harness) {
    let q = h.q();
    live_worker(q, "dying").await;
    live_worker(q, "healthy").await;
    let lost = q.enqueue("jobs", "test", json!({ "n": 1 })).await.unwrap();
    q.enqueue("jobs", "test", json!({ "n": 2 })).await.unwrap();
    let held_by_dying = take(q, "jobs", "dying").await;
    let held_by_healthy = take(q, "jobs", "healthy").await;
    assert_eq!(held_by_dying.envelope.id, lost);
    assert_eq!(q.reap().await.unwrap(), 0, "both workers are alive");

    // "dying" sends a last, short heartbeat and stops; its job comes back, the healthy
    // worker's does not.
    q.heartbeat("dying", Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(reap_until_moved(q).await, 1);
    assert_eq!(stats(q, "jobs").await, counts(1, 1, 0, 0));
    live_worker(q, "rescuer").await;
    let rescued = take(q, "jobs", "rescuer").await;
    assert_eq!(rescued.envelope.id, lost);
    assert_eq!(
        rescued.envelope.attempt, 0,
        "a crash is not a handler failure"
    );

    assert!(
        !q.ack(&held_by_dying).await.unwrap(),
        "the reaped worker no longer holds it"
    );
    assert!(q.ack(&rescued).await.unwrap());
    assert!(q.ack(&held_by_healthy).await.unwrap());
    assert_eq!(stats(q, "jobs").await, counts(0, 0, 0, 0));
}

pub async fn concurrent_reapers_move_each_job_once(h: &Harness) {
    let q = h.q();
    q.heartbeat("dying", Duration::from_millis(50))
        .await
        .unwrap();
    for n in 0..6 {
        q.enqueue(
            if n % 2 == 0 { "even" } else { "odd" },
            "test",
            json!({ "n": n }),
        )
        .await
        .unwrap();
    }
    for _ in 0..3 {
        take(q, "even", "dying").await;
        take(q, "odd", "dying").await;
    }
    // Let the heartbeat lapse, then race four reapers.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let reapers = (0..4).map(|_| {
        let queue = h.queue.clone();
        tokio::spawn(async move { queue.reap().await.unwrap() })
    });
    let mut moved = 0;
    for reaper in reapers.collect::<Vec<_>>() {
        moved += reaper.await.unwrap();
    }
    assert_eq!(moved, 6);
    assert_eq!(stats(q, "even").await, counts(3, 0, 0, 0));
    assert_eq!(stats(q, "odd").await, counts(3, 0, 0, 0));
    // Reaped jobs keep their order.
    live_worker(q, "w2").await;
    for n in [0, 2, 4] {
        assert_eq!(
            take(q, "even", "w2").await.envelope.payload,
            json!({ "n": n })
        );
    }
}

pub async fn retired_workers_are_reaped_at_once(h: &Harness) {
    let q = h.q();
    live_worker(q, "leaving").await;
    q.enqueue("jobs", "test", json!({})).await.unwrap();
    take(q, "jobs", "leaving").await;
    assert_eq!(q.reap().await.unwrap(), 0);
    q.retire("leaving").await.unwrap();
    assert_eq!(q.reap().await.unwrap(), 1);
    assert_eq!(stats(q, "jobs").await, counts(1, 0, 0, 0));
}

pub async fn held_lists_a_workers_jobs_for_release_or_ack(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    live_worker(q, "w2").await;
    let a = q.enqueue("jobs", "test", json!({ "n": 1 })).await.unwrap();
    let b = q.enqueue("jobs", "test", json!({ "n": 2 })).await.unwrap();
    let c = q.enqueue("jobs", "test", json!({ "n": 3 })).await.unwrap();
    q.enqueue("other", "test", json!({})).await.unwrap();
    take(q, "jobs", "w1").await;
    take(q, "jobs", "w2").await;
    take(q, "jobs", "w1").await;
    take(q, "other", "w1").await;

    let ids = |jobs: &[Reserved]| {
        jobs.iter()
            .map(|j| j.envelope.id.clone())
            .collect::<Vec<_>>()
    };
    let held = q.held("jobs", "w1").await.unwrap();
    assert_eq!(
        ids(&held),
        [a.clone(), c.clone()],
        "oldest reservation first"
    );
    assert_eq!(held[0].envelope.payload, json!({ "n": 1 }));
    assert_eq!(ids(&q.held("jobs", "w2").await.unwrap()), [b]);
    assert!(q.held("jobs", "nobody").await.unwrap().is_empty());

    // What `held` returns is as good as what `reserve` returned.
    assert!(q.release(&held[0]).await.unwrap());
    assert!(q.ack(&held[1]).await.unwrap());
    assert!(q.held("jobs", "w1").await.unwrap().is_empty());
    assert_eq!(stats(q, "jobs").await, counts(1, 1, 0, 0));
    assert_eq!(take(q, "jobs", "w1").await.envelope.id, a);
    assert!(q.held("jobs", "bad name").await.is_err());
}

pub async fn released_jobs_go_to_the_front(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    let first = q.enqueue("jobs", "test", json!({ "n": 1 })).await.unwrap();
    let second = q.enqueue("jobs", "test", json!({ "n": 2 })).await.unwrap();
    let job = take(q, "jobs", "w1").await;
    assert_eq!(job.envelope.id, first);
    assert!(q.release(&job).await.unwrap());
    assert!(!q.release(&job).await.unwrap());
    let again = take(q, "jobs", "w1").await;
    assert_eq!(again.envelope.id, first);
    assert_eq!(again.envelope.attempt, 0, "a release is not a failure");
    assert_eq!(take(q, "jobs", "w1").await.envelope.id, second);
}

pub async fn duplicate_ids_are_suppressed_while_pending(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    let id = JobId::new("transcription-42").unwrap();
    let job = || NewJob::new("test", json!({ "n": 1 })).with_id(id.clone());

    let first = q.enqueue_job("jobs", job()).await.unwrap();
    assert_eq!(first.id, id);
    assert!(!first.duplicate);
    assert!(
        q.enqueue_job("jobs", job()).await.unwrap().duplicate,
        "while ready"
    );
    assert!(
        !q.enqueue_job("other", job()).await.unwrap().duplicate,
        "ids are per queue"
    );
    assert_eq!(stats(q, "jobs").await, counts(1, 0, 0, 0));

    let reserved = take(q, "jobs", "w1").await;
    assert_eq!(reserved.envelope.id, id);
    assert!(
        q.enqueue_job("jobs", job()).await.unwrap().duplicate,
        "while processing"
    );
    q.fail(&reserved, "retry me").await.unwrap();
    assert!(
        q.enqueue_job("jobs", job()).await.unwrap().duplicate,
        "while delayed"
    );
    promote_until_ready(q, "jobs", 1).await;
    let reserved = take(q, "jobs", "w1").await;
    assert!(q.ack(&reserved).await.unwrap());
    assert_eq!(stats(q, "jobs").await, counts(0, 0, 0, 0));

    assert!(
        !q.enqueue_job("jobs", job()).await.unwrap().duplicate,
        "released by the ack"
    );
    assert_eq!(stats(q, "jobs").await, counts(1, 0, 0, 0));
}

pub async fn bad_envelopes_go_to_the_dead_list(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    let genuine = h.queue.clone();
    let forged_envelope = Envelope::new(
        JobId::new("forged-key").unwrap(),
        "test",
        json!({ "evil": true }),
    );
    let forged = other_key().seal(&forged_envelope).unwrap();
    let unsigned = format!(
        r#"{{"envelope":{}}}"#,
        serde_json::to_string(&Envelope::new(
            JobId::new("unsigned").unwrap(),
            "test",
            json!({})
        ))
        .unwrap()
    );
    let tampered = crate::harness::signing_key()
        .seal(&Envelope::new(
            JobId::new("tampered").unwrap(),
            "test",
            json!({ "to": "a@example.com" }),
        ))
        .unwrap()
        .replace("a@example.com", "b@example.com");

    h.inject("jobs", "garbage", "this is not json").await;
    h.inject("jobs", "forged-key", &forged).await;
    h.inject("jobs", "unsigned", &unsigned).await;
    h.inject("jobs", "tampered", &tampered).await;
    let good = genuine
        .enqueue("jobs", "test", json!({ "ok": true }))
        .await
        .unwrap();

    let job = take(q, "jobs", "w1").await;
    assert_eq!(
        job.envelope.id, good,
        "rejected jobs are skipped, never returned"
    );
    assert!(q.ack(&job).await.unwrap());
    assert_eq!(stats(q, "jobs").await, counts(0, 0, 0, 4));

    let dead = q.dead("jobs").await.unwrap();
    assert!(dead.iter().all(|d| !d.verified));
    let reason_of = |id: &str| {
        dead.iter()
            .find(|d| d.id == id)
            .unwrap_or_else(|| panic!("no dead entry `{id}` in {dead:?}"))
            .reason
            .clone()
    };
    assert!(reason_of("forged-key").contains("bad signature"));
    assert!(reason_of("tampered").contains("bad signature"));
    assert!(reason_of("unsigned").contains("unsigned"));
    assert!(
        dead.iter()
            .any(|d| d.reason.contains("unparsable") && d.job == "this is not json"),
        "{dead:?}"
    );
    assert_eq!(
        dead.iter().find(|d| d.id == "forged-key").unwrap().job,
        forged,
        "the rejected job is kept as it was"
    );

    let refused = q.requeue_dead("jobs", "forged-key").await;
    assert!(
        matches!(refused, Err(QueueError::NotRequeueable { .. })),
        "{refused:?}"
    );
    assert_eq!(q.purge_dead("jobs").await.unwrap(), 4);
    assert_eq!(stats(q, "jobs").await, counts(0, 0, 0, 0));
}

/// Reserves until the queue is empty, acking every job; returns the ids in order.
async fn drain(q: &dyn ReliableQueue, queue: &str, worker: &str) -> Vec<JobId> {
    let mut done = Vec::new();
    while let Some(job) = q.reserve(queue, worker, Duration::ZERO).await.unwrap() {
        assert!(q.ack(&job).await.unwrap());
        done.push(job.envelope.id);
    }
    done
}

/// The issue's repro (`printf '\xff\xfe' | redis-cli -x lpush <prefix>:transcribe:ready`) and
/// every other way an entry can be unreadable before its signature is checked.
pub async fn unreadable_entries_go_to_the_dead_list(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    let before = q
        .enqueue("transcribe", "test", json!({ "n": 1 }))
        .await
        .unwrap();
    h.inject_bytes("transcribe", "not-utf8", b"\xff\xfe").await;
    h.inject_bytes("transcribe", "empty", b"").await;
    h.inject_bytes("transcribe", "array", b"[1,2]").await;
    h.inject_bytes(
        "transcribe",
        "wrong-shape",
        br#"{"envelope":7,"sig":"abc"}"#,
    )
    .await;
    let oversized = format!(
        r#"{{"envelope":{{"pad":"{}"}},"sig":"x"}}"#,
        "a".repeat(job_queue::MAX_JOB_BYTES)
    );
    h.inject_bytes("transcribe", "oversized", oversized.as_bytes())
        .await;
    let after = q
        .enqueue("transcribe", "test", json!({ "n": 2 }))
        .await
        .unwrap();

    assert_eq!(drain(q, "transcribe", "w1").await, [before, after]);
    assert_eq!(stats(q, "transcribe").await, counts(0, 0, 0, 5));
    let dead = q.dead("transcribe").await.unwrap();
    assert!(dead.iter().all(|d| !d.verified), "{dead:?}");
    let reason_of = |job: &str| {
        dead.iter()
            .find(|d| d.job == job)
            .unwrap_or_else(|| panic!("no dead entry with job {job:?} in {dead:?}"))
            .reason
            .clone()
    };
    assert!(reason_of("\u{fffd}\u{fffd}").contains("not UTF-8"));
    assert!(reason_of("").contains("unparsable"));
    assert!(reason_of("[1,2]").contains("unparsable"));
    assert!(reason_of(r#"{"envelope":7,"sig":"abc"}"#).contains("bad signature"));
    let big = dead
        .iter()
        .find(|d| d.reason.contains("oversized"))
        .unwrap_or_else(|| panic!("no oversized entry in {dead:?}"));
    assert!(
        big.job.len() < 10_000,
        "only a preview of an oversized job is kept"
    );
    assert_eq!(q.purge_dead("transcribe").await.unwrap(), 5);
}

/// A small seeded PRNG (xorshift64*), so the property check needs no extra dependency and a
/// failure can be replayed with `JOB_QUEUE_FUZZ_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A random entry that is not a valid job: random bytes, random ASCII/JSON-ish text, or a
/// genuine job with one byte changed.
fn poison(rng: &mut Rng, genuine: &str) -> Vec<u8> {
    match rng.below(4) {
        0 => {
            let len = rng.below(80) as usize;
            rng.bytes(len)
        }
        1 => {
            const ALPHABET: &[u8] = br#"{}[]":,\ envelopesig0123456789.-tfnul"#;
            let len = rng.below(60) as usize;
            (0..len)
                .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
                .collect()
        }
        2 => {
            let mut bytes = b"\xff\xfe".to_vec();
            let len = rng.below(20) as usize;
            bytes.extend(rng.bytes(len));
            bytes
        }
        _ => {
            let mut bytes = genuine.as_bytes().to_vec();
            let at = rng.below(bytes.len() as u64) as usize;
            let flip = 1 + rng.below(255) as u8;
            bytes[at] ^= flip;
            bytes
        }
    }
}

/// Property: whatever bytes are pushed straight into the ready queue, each entry ends on the
/// dead list (as the lossy text of its bytes) and the valid jobs around them all complete.
pub async fn random_bytes_end_on_the_dead_list_and_valid_jobs_complete(h: &Harness) {
    const ROUNDS: usize = 150;
    let seed = std::env::var("JOB_QUEUE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0 | 1);
    eprintln!("JOB_QUEUE_FUZZ_SEED={seed}");
    let mut rng = Rng(seed);
    let q = h.q();
    live_worker(q, "w1").await;
    let genuine = crate::harness::signing_key()
        .seal(&Envelope::new(
            JobId::new("genuine").unwrap(),
            "test",
            json!({ "to": "a@example.com" }),
        ))
        .unwrap();
    let mut valid = Vec::new();
    let mut expected_dead = Vec::new();
    for n in 0..ROUNDS {
        if rng.below(3) == 0 {
            valid.push(q.enqueue("jobs", "test", json!({ "n": n })).await.unwrap());
        }
        let raw = poison(&mut rng, &genuine);
        h.inject_bytes("jobs", &format!("poison-{n}"), &raw).await;
        expected_dead.push(String::from_utf8_lossy(&raw).into_owned());
    }
    valid.push(
        q.enqueue("jobs", "test", json!({ "n": "last" }))
            .await
            .unwrap(),
    );

    assert_eq!(
        drain(q, "jobs", "w1").await,
        valid,
        "seed {seed}: every valid job completes, in order"
    );
    let dead = q.dead("jobs").await.unwrap();
    assert_eq!(
        stats(q, "jobs").await,
        counts(0, 0, 0, ROUNDS as u64),
        "seed {seed}"
    );
    assert!(
        dead.iter().all(|d| !d.verified && !d.reason.is_empty()),
        "seed {seed}: {dead:?}"
    );
    let mut got = dead.into_iter().map(|d| d.job).collect::<Vec<_>>();
    got.sort();
    expected_dead.sort();
    assert_eq!(got, expected_dead, "seed {seed}");
}

/// An unreadable entry in a worker's processing area (a crash between the move and the
/// rejection, or a foreign write) is dead-listed by `held`, which still lists the good jobs;
/// the reaper moves a dead worker's unreadable entries like any other, and `reserve` then
/// dead-lists them.
pub async fn unreadable_held_entries_stall_neither_the_audit_nor_the_reaper(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    let good = q.enqueue("jobs", "test", json!({ "n": 1 })).await.unwrap();
    take(q, "jobs", "w1").await;
    h.inject_held("jobs", "w1", b"held-\xff", b"\xff\xfe").await;

    let held = q.held("jobs", "w1").await.unwrap();
    assert_eq!(
        held.iter()
            .map(|j| j.envelope.id.clone())
            .collect::<Vec<_>>(),
        [good]
    );
    assert_eq!(stats(q, "jobs").await, counts(0, 1, 0, 1));
    assert!(
        q.held("jobs", "w1").await.is_ok(),
        "the audit keeps working"
    );
    assert!(q.ack(&held[0]).await.unwrap());

    // A worker that died holding poison: reaped back to ready, then rejected by `reserve`.
    h.inject_foreign_names().await;
    q.heartbeat("gone", Duration::from_millis(1)).await.unwrap();
    h.inject_held("jobs", "gone", b"gone-\xfe", b"{\"envelope\":")
        .await;
    let after = q.enqueue("jobs", "test", json!({ "n": 2 })).await.unwrap();
    reap_until_moved(q).await;
    assert_eq!(drain(q, "jobs", "w1").await, [after]);
    assert_eq!(stats(q, "jobs").await, counts(0, 0, 0, 2));
    let dead = q.dead("jobs").await.unwrap();
    assert!(
        dead.iter().any(|d| d.reason.contains("not UTF-8")),
        "{dead:?}"
    );
    assert!(
        dead.iter().any(|d| d.reason.contains("unparsable")),
        "{dead:?}"
    );
    assert_eq!(q.purge_dead("jobs").await.unwrap(), 2);
}

pub async fn concurrent_consumers_never_share_a_job(h: &Harness) {
    const JOBS: usize = 60;
    let mut expected = HashSet::new();
    for n in 0..JOBS {
        expected.insert(
            h.q()
                .enqueue("jobs", "test", json!({ "n": n }))
                .await
                .unwrap(),
        );
    }
    let consumers = (0..4).map(|c| {
        let queue = h.queue.clone();
        tokio::spawn(async move {
            let worker = format!("consumer-{c}");
            queue.heartbeat(&worker, LONG_TTL).await.unwrap();
            let mut got = Vec::new();
            while let Some(job) = queue
                .reserve("jobs", &worker, Duration::from_millis(100))
                .await
                .unwrap()
            {
                assert!(queue.ack(&job).await.unwrap());
                got.push(job.envelope.id);
            }
            got
        })
    });
    let mut seen = HashSet::new();
    for consumer in consumers.collect::<Vec<_>>() {
        for id in consumer.await.unwrap() {
            assert!(seen.insert(id.clone()), "job {id} was delivered twice");
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(stats(h.q(), "jobs").await, counts(0, 0, 0, 0));
}

pub async fn waiting_reserve_gets_a_job_enqueued_later(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    let queue = h.queue.clone();
    let waiter = tokio::spawn(async move {
        queue
            .reserve("jobs", "w1", Duration::from_secs(10))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = q.enqueue("jobs", "test", json!({})).await.unwrap();
    let job = waiter
        .await
        .unwrap()
        .expect("the waiting reserve gets the job");
    assert_eq!(job.envelope.id, id);
    assert!(
        q.reserve("jobs", "w1", Duration::from_millis(30))
            .await
            .unwrap()
            .is_none(),
        "a wait on an empty queue ends empty-handed"
    );
}

pub async fn names_are_validated(h: &Harness) {
    let q = h.q();
    for bad in ["", "_internal", "a:b", "with space"] {
        assert!(matches!(
            q.enqueue(bad, "test", json!({})).await,
            Err(QueueError::InvalidName { .. })
        ));
        assert!(matches!(
            q.reserve("jobs", bad, Duration::ZERO).await,
            Err(QueueError::InvalidName { .. })
        ));
    }
    q.ping().await.unwrap();
}

pub async fn buried_jobs_go_to_the_dead_list_at_once(h: &Harness) {
    let q = h.q();
    live_worker(q, "w1").await;
    let id = q.enqueue("jobs", "test", json!({ "n": 1 })).await.unwrap();
    let job = take(q, "jobs", "w1").await;
    assert_eq!(
        q.bury(&job, "550 no such user").await.unwrap(),
        FailOutcome::Dead
    );
    assert_eq!(stats(q, "jobs").await, counts(0, 0, 0, 1));
    let dead = q.dead("jobs").await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id.as_str());
    assert_eq!(dead[0].attempt, 1, "died at its first delivery");
    assert!(dead[0].verified);
    assert!(
        dead[0].reason.contains("550 no such user"),
        "{}",
        dead[0].reason
    );
    assert_eq!(
        q.bury(&job, "again").await.unwrap(),
        FailOutcome::NotHeld,
        "burying a job no longer held changes nothing"
    );
    assert_eq!(q.dead("jobs").await.unwrap().len(), 1);
}

pub async fn markers_are_set_once_until_they_expire(h: &Harness) {
    let q = h.q();
    assert!(!q.has_marker("sent:notify-a").await.unwrap());
    assert!(q.set_marker("sent:notify-a", LONG_TTL).await.unwrap());
    assert!(q.has_marker("sent:notify-a").await.unwrap());
    assert!(
        !q.set_marker("sent:notify-a", LONG_TTL).await.unwrap(),
        "a live marker is set only once"
    );
    assert!(!q.has_marker("sent:notify-b").await.unwrap());

    // Concurrent setters: exactly one wins.
    let (a, b, c, d) = tokio::join!(
        q.set_marker("race", LONG_TTL),
        q.set_marker("race", LONG_TTL),
        q.set_marker("race", LONG_TTL),
        q.set_marker("race", LONG_TTL),
    );
    let wins = [a, b, c, d]
        .into_iter()
        .filter(|won| *won.as_ref().unwrap());
    assert_eq!(wins.count(), 1);

    // A marker expires after its TTL and can then be set again.
    assert!(
        q.set_marker("short", Duration::from_millis(50))
            .await
            .unwrap()
    );
    let mut expired = false;
    for _ in 0..500 {
        if !q.has_marker("short").await.unwrap() {
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(expired, "the marker never expired");
    assert!(q.set_marker("short", LONG_TTL).await.unwrap());

    for bad in ["", "a b", "x\n", &"m".repeat(201)] {
        assert!(
            matches!(
                q.set_marker(bad, LONG_TTL).await,
                Err(QueueError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
}
