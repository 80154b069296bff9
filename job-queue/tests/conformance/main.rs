//! One conformance suite for every `ReliableQueue` backend: each check in `checks.rs` runs
//! once on Redis and once on SQLite, each time on a fresh, isolated queue.

// Test code: a failed expectation should panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod checks;
mod harness;

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    if let Some(harness) = crate::harness::Harness::redis().await {
                        crate::checks::$check(&harness).await;
                    }
                }
            )*
        }

        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let harness = crate::harness::Harness::sqlite().await;
                    crate::checks::$check(&harness).await;
                }
            )*
        }
    };
}

conformance!(
    fifo_order_per_queue,
    ack_removes_the_job,
    fail_retries_after_backoff,
    exhausted_jobs_go_to_the_dead_list,
    dead_jobs_can_be_requeued_and_purged,
    reaper_returns_jobs_of_expired_workers,
    concurrent_reapers_move_each_job_once,
    retired_workers_are_reaped_at_once,
    released_jobs_go_to_the_front,
    held_lists_a_workers_jobs_for_release_or_ack,
    duplicate_ids_are_suppressed_while_pending,
    bad_envelopes_go_to_the_dead_list,
    unreadable_entries_go_to_the_dead_list,
    random_bytes_end_on_the_dead_list_and_valid_jobs_complete,
    unreadable_held_entries_stall_neither_the_audit_nor_the_reaper,
    concurrent_consumers_never_share_a_job,
    waiting_reserve_gets_a_job_enqueued_later,
    names_are_validated,
    buried_jobs_go_to_the_dead_list_at_once,
    markers_are_set_once_until_they_expire,
);
