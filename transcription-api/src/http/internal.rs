//! `PUT /internal/transcriptions/{id}/result` and `…/notification`: the worker reports progress,
//! results and the fate of the owner's e-mail with its own client_credentials token
//! ([`TRANSCRIPTIONS_REPORT`]). The bodies are the worker's own types ([`ResultReport`],
//! [`NotificationReport`]), read field by field by [`validate`] and described in the OpenAPI
//! document from those same types.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::put;
use contracts::report::{NotificationReport, ResultReport};
use contracts::scopes::TRANSCRIPTIONS_REPORT;
use plumbing::http::read_body;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, ValidationErrors};
use crate::AppState;
use crate::store::{Notification, NotificationOutcome, ReportOutcome, Status};
use crate::validate;

/// Largest accepted report body: transcripts of long recordings are large.
pub const MAX_REPORT_BYTES: usize = 1024 * 1024;

pub fn router(state: &AppState) -> Router<AppState> {
    let report_scope = state.guard.require_scope(TRANSCRIPTIONS_REPORT);
    Router::new()
        .route(
            "/internal/transcriptions/{id}/result",
            put(report).route_layer(report_scope.clone()),
        )
        .route(
            "/internal/transcriptions/{id}/notification",
            put(notification).route_layer(report_scope),
        )
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
        (status = 404, description = "Unknown transcription", body = ErrorBody),
        (status = 409, description = "Already final with another result", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 422, description = "Invalid report", body = ValidationErrors),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let (id, report) =
        read_json_report(&id, &headers, body, MAX_REPORT_BYTES, validate::report).await?;
    match state.transcriptions.report(id, &report).await? {
        ReportOutcome::Applied | ReportOutcome::Unchanged => Ok(StatusCode::NO_CONTENT),
        ReportOutcome::NotFound => Err(ApiError::NotFound),
        ReportOutcome::Conflict(current) => Err(ApiError::Conflict(format!(
            "The transcription is {current}; it cannot become {}.",
            Status::from(&report)
        ))),
    }
}

/// Largest accepted notification report: a status and a reason of at most 4096 bytes.
pub const MAX_NOTIFICATION_BYTES: usize = 16 * 1024;

/// Report whether the owner's e-mail went out (notifier only).
///
/// `pending → sent | failed`. Repeating the final state is accepted (the notifier retries after a
/// lost answer); changing it is refused. A body with `"status": "pending"` is refused (422).
#[utoipa::path(
    put,
    path = "/internal/transcriptions/{id}/notification",
    tag = "internal",
    params(("id" = Uuid, Path, description = "Transcription id")),
    request_body(content = NotificationReport, content_type = "application/json",
                 description = "`sent`, or `failed` with its `reason` (≤ 4096 bytes)"),
    responses(
        (status = 204, description = "Recorded (or already so)"),
        (status = 401, description = "No or invalid token"),
        (status = 404, description = "Unknown transcription", body = ErrorBody),
        (status = 409, description = "Already final with another state or reason", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid report", body = ValidationErrors),
    )
)]
pub async fn notification(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let (id, report) = read_json_report(
        &id,
        &headers,
        body,
        MAX_NOTIFICATION_BYTES,
        validate::notification,
    )
    .await?;
    let notification = Notification::from(report);
    match state
        .transcriptions
        .report_notification(id, &notification)
        .await?
    {
        NotificationOutcome::Applied | NotificationOutcome::Unchanged => Ok(StatusCode::NO_CONTENT),
        NotificationOutcome::NotFound => Err(ApiError::NotFound),
        NotificationOutcome::Conflict(current) => Err(ApiError::Conflict(format!(
            "The notification is already {}; it cannot become {}.",
            current.as_str(),
            notification.as_str()
        ))),
    }
}

/// The transcription id of an internal route (404 when it is not a UUID) and its JSON body of
/// at most `limit` bytes, parsed by `parse` (415 for another media type, 422 per field).
async fn read_json_report<T>(
    id: &str,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    parse: fn(Option<&str>, &[u8]) -> Result<T, validate::BodyError>,
) -> Result<(Uuid, T), ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::NotFound)?;
    let bytes = read_body(headers, body, limit).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed = parse(content_type, &bytes).map_err(|e| match e {
        validate::BodyError::UnsupportedMediaType => {
            ApiError::UnsupportedMediaType("application/json")
        }
        other => other.into(),
    })?;
    Ok((id, parsed))
}
