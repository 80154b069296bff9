//! HTTP surface of the API: one router per concern, merged here, with request metrics.

mod error;
mod health;
mod internal;
pub mod openapi;
mod transcriptions;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;

pub use error::ApiError;
pub use internal::MAX_REPORT_BYTES;
pub use transcriptions::MAX_SUBMISSION_BYTES;

use crate::AppState;

/// The complete route table.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(transcriptions::router(&state))
        .merge(internal::router(&state))
        .merge(health::router())
        .merge(openapi::router())
        .layer(middleware::from_fn(record_metrics))
        .with_state(state)
}

/// Counts requests and their durations per route and status.
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}
