//! Prometheus metrics of the auth server (served at `GET /metrics`): what it recorded, where,
//! and the process-wide recorder. Labels carry only values from fixed sets (grant types, RFC
//! 6749 error codes, route templates, revocation kinds): never a client id, user name or token.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `oauth_tokens_issued_total` | counter | `grant_type` |
//! | `oauth_token_errors_total` | counter | `error` (RFC 6749 §5.2 code) |
//! | `oauth_login_failures_total` | counter | |
//! | `oauth_login_throttled_total` | counter | |
//! | `oauth_login_lockouts_total` | counter | `key` (`account` or `address`) |
//! | `oauth_refresh_reuse_detected_total` | counter | |
//! | `oauth_revocations_total` | counter | `kind` (`access_token`, `refresh_family`, `user`, `client`) |
//! | `http_requests_total` | counter | `method`, `route`, `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `route` |

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Name of the request latency histogram.
pub const REQUEST_DURATION: &str = "http_request_duration_seconds";

/// Buckets of [`REQUEST_DURATION`], in seconds: token issuance takes well under a millisecond,
/// a password login tens of milliseconds.
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Installs the Prometheus recorder as this process's `metrics` recorder and returns the
/// handle that renders the text format; every call returns the same handle. `None` (logged)
/// when another recorder was installed first: in one process sharing a recorder, pass that
/// one's handle in [`crate::config::ServerConfig::metrics`] instead.
pub fn install_prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(REQUEST_DURATION.to_owned()),
                    REQUEST_DURATION_BUCKETS,
                )
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .clone()
}

/// Counts requests and records their durations per route template and status.
pub async fn record_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(REQUEST_DURATION, "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}
