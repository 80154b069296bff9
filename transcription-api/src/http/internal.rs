//! `PUT /internal/transcriptions/{id}/result`: the worker reports progress and results with its
//! own client_credentials token (`transcriptions:report`).

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::put;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, ValidationErrors};
use super::read_body;
use crate::AppState;
use crate::store::ReportOutcome;
use crate::validate;

/// Largest accepted report body: transcripts of long recordings are large.
pub const MAX_REPORT_BYTES: usize = 1024 * 1024;

pub const SCOPE_REPORT: &str = "transcriptions:report";

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new().route(
        "/internal/transcriptions/{id}/result",
        put(report).route_layer(state.guard.require_scope(SCOPE_REPORT)),
    )
}

/// A worker report, by `status`.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // Documents the body; parsing is in `validate`.
pub struct ResultReport {
    /// `processing`, `completed` or `failed`.
    #[schema(example = "completed")]
    status: String,
    /// Required with `completed`.
    transcript: Option<String>,
    /// Required with `failed` (≤ 4096 bytes).
    error: Option<String>,
}

/// Report progress or the result of a transcription (worker only).
///
/// `queued → processing → completed | failed`. Repeating the current state is accepted (the
/// worker retries); changing a final result is refused.
#[utoipa::path(
    put,
    path = "/internal/transcriptions/{id}/result",
    tag = "internal",
    params(("id" = Uuid, Path, description = "Transcription id")),
    request_body(content = ResultReport, content_type = "application/json"),
    responses(
        (status = 204, description = "Recorded (or already so)"),
        (status = 401, description = "No or invalid token"),
        (status = 403, description = "Token lacks transcriptions:report"),
        (status = 404, description = "Unknown transcription", body = ErrorBody),
        (status = 409, description = "Already final with another result", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 422, description = "Invalid report", body = ValidationErrors),
    ),
    security(("bearer" = ["transcriptions:report"]))
)]
pub async fn report(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let bytes = read_body(&headers, body, MAX_REPORT_BYTES).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let report = validate::report(content_type, &bytes).map_err(|e| match e {
        validate::BodyError::UnsupportedMediaType => {
            ApiError::UnsupportedMediaType("application/json")
        }
        other => other.into(),
    })?;
    match state.transcriptions.report(id, &report).await? {
        ReportOutcome::Applied | ReportOutcome::Unchanged => Ok(StatusCode::NO_CONTENT),
        ReportOutcome::NotFound => Err(ApiError::NotFound),
        ReportOutcome::Conflict(current) => Err(ApiError::Conflict(format!(
            "The transcription is {current}; it cannot become {}.",
            report.status()
        ))),
    }
}
