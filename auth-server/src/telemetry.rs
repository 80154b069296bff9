//! Prometheus metrics of the auth server (served at `GET /metrics`): what it records, where,
//! and its part of the process-wide recorder ([`METRICS`]). Labels carry only values from fixed sets (grant types, RFC
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

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::PrometheusHandle;
use plumbing::metrics::{Histogram, ServiceMetrics};

/// Name of the request latency histogram.
pub const REQUEST_DURATION: &str = "http_request_duration_seconds";

/// Buckets of [`REQUEST_DURATION`], in seconds: token issuance takes well under a millisecond,
/// a password login tens of milliseconds.
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// What the auth server records, for the process's recorder: [`REQUEST_DURATION`] as a
/// histogram with [`REQUEST_DURATION_BUCKETS`]; its series carry no descriptions.
pub const METRICS: ServiceMetrics = ServiceMetrics {
    histograms: &[Histogram {
        name: REQUEST_DURATION,
        buckets: REQUEST_DURATION_BUCKETS,
    }],
    describe: || {},
};

/// Installs the process's Prometheus recorder with the auth server's [`METRICS`]
/// ([`plumbing::metrics::install_prometheus`]) and returns the handle that renders the text
/// format; every call returns the same handle. `None` (logged) when another `metrics` recorder
/// was installed first. A process running other services too installs the recorder with all
/// their [`ServiceMetrics`] and passes the handle in [`crate::config::ServerConfig::metrics`].
pub fn install_prometheus() -> Option<PrometheusHandle> {
    plumbing::metrics::install_prometheus(&[METRICS])
        .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
        .ok()
}

/// Counts requests and records their durations per route template and status. Every label
/// is a `&'static str`, so a request allocates nothing for its metrics.
pub async fn record_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| route_label(path.as_str()));
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = status_label(response.status());
    metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// The route template as a `'static` label. Templates come from the router, a fixed set, so
/// each is leaked once.
fn route_label(template: &str) -> &'static str {
    static ROUTES: OnceLock<RwLock<HashMap<String, &'static str>>> = OnceLock::new();
    let routes = ROUTES.get_or_init(RwLock::default);
    if let Ok(known) = routes.read()
        && let Some(label) = known.get(template)
    {
        return label;
    }
    match routes.write() {
        Ok(mut known) => known
            .entry(template.to_owned())
            .or_insert_with(|| Box::leak(template.to_owned().into_boxed_str())),
        Err(_) => "unmatched",
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_label(status: StatusCode) -> &'static str {
    const KNOWN: [(u16, &str); 14] = [
        (200, "200"),
        (204, "204"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (413, "413"),
        (429, "429"),
        (500, "500"),
        (503, "503"),
    ];
    KNOWN
        .iter()
        .find(|(code, _)| *code == status.as_u16())
        .map_or(
            match status.as_u16() {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            },
            |(_, label)| label,
        )
}
