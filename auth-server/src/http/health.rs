//! `GET /healthz` (the process answers) and `GET /readyz` (the database answers too).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Prometheus text format of this process's metrics ([`crate::telemetry`]).
async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("text/plain; version=0.0.4"),
            )],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response(),
    }
}

async fn healthz() -> Response {
    super::json_response(StatusCode::OK, r#"{"status":"ok"}"#.to_owned(), "no-store")
}

async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => super::json_response(
            StatusCode::OK,
            r#"{"status":"ready"}"#.to_owned(),
            "no-store",
        ),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness check failed");
            unavailable()
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            unavailable()
        }
    }
}

fn unavailable() -> Response {
    super::json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"status":"unavailable","checks":{"database":"down"}}"#.to_owned(),
        "no-store",
    )
}
