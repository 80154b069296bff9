//! Metric names and recording helpers over the `metrics` facade, the worker's part of the
//! Prometheus recorder ([`METRICS`]) and the `/metrics` + `/healthz` endpoint that serves it.
//!
//! Nothing is exported unless the process installs a recorder: [`install_prometheus`] (the
//! `worker` binary does with `--metrics-bind`; the one-process stack installs one with every
//! service's metrics). Without one every recording call is a no-op.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use job_queue::{QueueStats, ReliableQueue};
use metrics_exporter_prometheus::PrometheusHandle;
use plumbing::metrics::{Histogram, ServiceMetrics};

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
/// Counter: jobs cancelled at their `JOB_TIMEOUT_SECS` deadline (each also counts as failed).
pub const JOBS_TIMED_OUT: &str = "worker_jobs_timed_out_total";
/// Histogram: seconds from reservation to ack/fail (labels `queue`, `kind`).
pub const PROCESSING_SECONDS: &str = "worker_job_processing_seconds";
/// Gauge: jobs per queue and state (`ready`, `processing`, `delayed`, `dead`).
pub const QUEUE_DEPTH: &str = "worker_queue_depth";

/// Bucket bounds of [`PROCESSING_SECONDS`], in seconds: no-op jobs to long transcriptions.
pub const PROCESSING_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
];
/// How long `GET /healthz` waits for the queue backend to answer a ping before it answers 503
/// `queue timed out` (README, worker Metrics: "`200 ok` when the queue backend answers a ping
/// within 2 s, else 503"). Shorter than the Redis client's own response timeout (5 s), so a
/// backend that does not answer is reported by this deadline.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the endpoint's background task runs the recorder's upkeep (histogram draining),
/// so memory stays bounded when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why metrics could not be exported.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TelemetryError {
    /// Another `metrics` recorder was installed in this process first, or the builder refused
    /// its configuration.
    #[error("cannot install the Prometheus recorder: {0}")]
    Install(String),
}

/// What the worker records, for the process's recorder: [`PROCESSING_SECONDS`] as a histogram
/// with [`PROCESSING_BUCKETS`], and the descriptions of every series ([`describe`]).
pub const METRICS: ServiceMetrics = ServiceMetrics {
    histograms: &[Histogram {
        name: PROCESSING_SECONDS,
        buckets: PROCESSING_BUCKETS,
    }],
    describe,
};

/// Installs the process's Prometheus recorder with the worker's [`METRICS`]
/// ([`plumbing::metrics::install_prometheus`]) and returns the handle that renders the text
/// format. Idempotent: every call returns the same handle.
pub fn install_prometheus() -> Result<PrometheusHandle, TelemetryError> {
    plumbing::metrics::install_prometheus(&[METRICS])
        .map_err(|plumbing::metrics::InstallError(cause)| TelemetryError::Install(cause))
}

/// `GET /metrics` (Prometheus text format) and `GET /healthz` (200 when the queue answers a
/// ping within [`HEALTH_TIMEOUT`], else 503).
pub fn metrics_router(handle: PrometheusHandle, queue: Arc<dyn ReliableQueue>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(health))
        .with_state(EndpointState { handle, queue })
}

#[derive(Clone)]
struct EndpointState {
    handle: PrometheusHandle,
    queue: Arc<dyn ReliableQueue>,
}

async fn render_metrics(State(state): State<EndpointState>) -> impl IntoResponse {
    state.handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.handle.render(),
    )
}

async fn health(State(state): State<EndpointState>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(HEALTH_TIMEOUT, state.queue.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok\n"),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "health check: queue unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "queue unreachable\n")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "queue timed out\n"),
    }
}

/// The metrics endpoint, bound and ready to serve.
pub struct MetricsServer {
    listener: tokio::net::TcpListener,
    router: Router,
    handle: PrometheusHandle,
}

impl MetricsServer {
    /// Binds `addr` (port 0: any free port; see [`local_addr`](Self::local_addr)).
    pub async fn bind(
        addr: SocketAddr,
        handle: PrometheusHandle,
        queue: Arc<dyn ReliableQueue>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(MetricsServer {
            listener,
            router: metrics_router(handle.clone(), queue),
            handle,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, running the recorder's upkeep meanwhile.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let handle = self.handle;
        let upkeep = tokio::spawn(async move {
            let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                interval.tick().await;
                handle.run_upkeep();
            }
        });
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        upkeep.abort();
        served
    }
}

/// Registers descriptions with the installed recorder (installing it with [`METRICS`] does).
pub fn describe() {
    metrics::describe_counter!(JOBS_ENQUEUED, "Jobs enqueued by this process");
    metrics::describe_counter!(JOBS_SUCCEEDED, "Jobs handled and acknowledged");
    metrics::describe_counter!(JOBS_FAILED, "Failed job deliveries");
    metrics::describe_counter!(JOBS_RETRIED, "Failed deliveries scheduled for retry");
    metrics::describe_counter!(JOBS_DEAD, "Jobs moved to the dead list");
    metrics::describe_counter!(
        JOBS_TIMED_OUT,
        "Jobs cancelled at their JOB_TIMEOUT_SECS deadline"
    );
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
