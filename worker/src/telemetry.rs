//! Metric names and recording helpers over the `metrics` facade. Nothing is exported unless
//! the embedding process installs a recorder (e.g. a Prometheus exporter); without one every
//! call is a no-op.

use job_queue::QueueStats;

/// Counter: jobs this process enqueued (label `queue`).
pub const JOBS_ENQUEUED: &str = "worker_jobs_enqueued_total";
/// Counter: jobs handled and acked (labels `queue`, `kind`).
pub const JOBS_SUCCEEDED: &str = "worker_jobs_succeeded_total";
/// Counter: failed deliveries, whatever happened next (labels `queue`, `kind`).
pub const JOBS_FAILED: &str = "worker_jobs_failed_total";
/// Counter: failed deliveries scheduled for a retry (labels `queue`, `kind`).
pub const JOBS_RETRIED: &str = "worker_jobs_retried_total";
/// Counter: jobs moved to the dead list by this process (labels `queue`, `kind`).
pub const JOBS_DEAD: &str = "worker_jobs_dead_total";
/// Histogram: seconds from reservation to ack/fail (labels `queue`, `kind`).
pub const PROCESSING_SECONDS: &str = "worker_job_processing_seconds";
/// Gauge: jobs per queue and state (`ready`, `processing`, `delayed`, `dead`).
pub const QUEUE_DEPTH: &str = "worker_queue_depth";

/// Registers descriptions with the installed recorder (call once after installing one).
pub fn describe() {
    metrics::describe_counter!(JOBS_ENQUEUED, "Jobs enqueued by this process");
    metrics::describe_counter!(JOBS_SUCCEEDED, "Jobs handled and acknowledged");
    metrics::describe_counter!(JOBS_FAILED, "Failed job deliveries");
    metrics::describe_counter!(JOBS_RETRIED, "Failed deliveries scheduled for retry");
    metrics::describe_counter!(JOBS_DEAD, "Jobs moved to the dead list");
    metrics::describe_histogram!(
        PROCESSING_SECONDS,
        metrics::Unit::Seconds,
        "Time from reservation to acknowledgement or failure"
    );
    metrics::describe_gauge!(QUEUE_DEPTH, "Jobs per queue and state");
}

pub(crate) fn enqueued(queue: &str) {
    metrics::counter!(JOBS_ENQUEUED, "queue" => queue.to_owned()).increment(1);
}

pub(crate) fn count(name: &'static str, queue: &str, kind: &str) {
    metrics::counter!(name, "queue" => queue.to_owned(), "kind" => kind.to_owned()).increment(1);
}

pub(crate) fn processing_time(queue: &str, kind: &str, seconds: f64) {
    metrics::histogram!(PROCESSING_SECONDS, "queue" => queue.to_owned(), "kind" => kind.to_owned())
        .record(seconds);
}

pub(crate) fn queue_depth(queue: &str, stats: &QueueStats) {
    for (state, value) in [
        ("ready", stats.ready),
        ("processing", stats.processing),
        ("delayed", stats.delayed),
        ("dead", stats.dead),
    ] {
        metrics::gauge!(QUEUE_DEPTH, "queue" => queue.to_owned(), "state" => state)
            .set(value as f64);
    }
}
