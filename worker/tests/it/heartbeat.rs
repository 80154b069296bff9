//! README, Fault tolerance: "the worker renews a heartbeat key every third of
//! `HEARTBEAT_TTL_SECS` (default 30)", and the recovery time that follows from it. Read from
//! Redis, not timed by the test: a heartbeat is `SET <prefix>:_heartbeat:<worker id> <now ms>
//! PX <ttl>`, so each value is the worker's own clock at a renewal and the key's expiry is
//! when Redis would drop it (one machine, one clock). A renewal cannot come early (the loop
//! sleeps the whole interval), so the gaps between values have an exact lower bound; the
//! upper bounds only allow for a renewal being late on a loaded machine.
//!
//! The other half of the recovery time, the 2 s between maintenance passes, is a constant:
//! `worker/src/config.rs::workers_renew_the_heartbeat_every_third_of_the_ttl_and_reap_every_2_seconds`.
//! That a pass returns the jobs of a worker whose key expired is
//! `job-queue/tests/conformance/checks.rs::reaper_returns_jobs_of_expired_workers`.

use std::time::Duration;

use test_support::process::{ServiceProcess, Signal};
use uuid::Uuid;

use crate::helpers::{
    RedisTestQueue, SIGNING_KEY, TempDir, redis_connection, redis_value_and_expiry,
};

/// The default `HEARTBEAT_TTL_SECS`, in milliseconds.
const TTL_MS: i64 = 30_000;
/// A third of it: the renewal interval.
const RENEWAL_MS: i64 = TTL_MS / 3;
/// How late a renewal may be (the renewal task woken late, the `SET` slow to reach Redis on
/// a loaded machine), and how much later than the worker's clock reading Redis may run the
/// `SET`. Generous for either, and below a sixth of the TTL, so a renewal every half TTL
/// (15 s) or a key given more than the TTL would fail.
const SLACK_MS: i64 = 5_000;

/// A `worker notifier` on Redis with the default TTL: the key is given exactly the TTL each
/// time, renewed every third of it, never missing while the worker lives, and dropped at once
/// by a clean stop.
#[tokio::test]
async fn the_heartbeat_lives_the_ttl_and_is_renewed_every_third_of_it() {
    let Some(redis) = RedisTestQueue::connect().await else {
        return;
    };
    let dir = TempDir::new("heartbeat");
    let worker_id = format!("heartbeat-{}", Uuid::new_v4().simple());
    let key = format!("{}:_heartbeat:{worker_id}", redis.prefix);
    let mut conn = redis_connection(&redis.url).await;

    let mut notifier = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &["notifier"],
        &[
            ("REDIS_URL", redis.url.clone()),
            ("QUEUE_PREFIX", redis.prefix.clone()),
            ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
            ("WORKER_ID", worker_id.clone()),
            (
                "OUTBOX_DIR",
                dir.path().join("outbox").display().to_string(),
            ),
            ("LOG_FORMAT", "json".to_owned()),
        ],
        &dir.path().join("logs"),
    );

    // (set at, expires at) of each renewal seen: the first heartbeat and two renewals.
    let mut renewals: Vec<(i64, i64)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while renewals.len() < 3 {
        match redis_value_and_expiry(&mut conn, &key).await {
            Some(seen) if renewals.last().map(|(set_at, _)| *set_at) != Some(seen.0) => {
                renewals.push(seen);
            }
            Some(_) => {}
            None => assert!(
                renewals.is_empty(),
                "the heartbeat key expired while the worker runs; renewals {renewals:?}\n{}",
                notifier.output()
            ),
        }
        assert!(
            notifier.exit_status().is_none() && tokio::time::Instant::now() < deadline,
            "renewals seen: {renewals:?}\n{}",
            notifier.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    eprintln!("heartbeat renewals (set at, expires at), Unix ms: {renewals:?}");
    for (set_at, expires_at) in &renewals {
        let lifetime = expires_at - set_at;
        assert!(
            (TTL_MS..TTL_MS + SLACK_MS).contains(&lifetime),
            "a heartbeat lives the TTL ({TTL_MS} ms), this one {lifetime} ms: {renewals:?}"
        );
    }
    for pair in renewals.windows(2) {
        let interval = pair[1].0 - pair[0].0;
        assert!(
            (RENEWAL_MS..RENEWAL_MS + SLACK_MS).contains(&interval),
            "renewed every third of the TTL ({RENEWAL_MS} ms), this time after {interval} ms: \
             {renewals:?}"
        );
    }

    // A clean stop drops the key at once: the reaper does not wait for the TTL.
    notifier.stop_cleanly(Signal::Term).await;
    assert_eq!(redis_value_and_expiry(&mut conn, &key).await, None);
}
