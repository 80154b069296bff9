//! `POST /transcriptions` (and the seed's `POST /transcription`), `GET /transcriptions/{id}`,
//! `GET /transcriptions`, `POST /transcriptions/{id}/retry`: what token holders do.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contracts::scopes::{TRANSCRIPTIONS_READ, TRANSCRIPTIONS_WRITE};
use plumbing::http::read_body;
use serde::Serialize;
use token_guard::Principal;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, ValidationErrors};
use crate::AppState;
use crate::store::{Notification, Status, Transcription};
use crate::submissions::{Caller, Submitted};
use crate::validate::{self, FieldErrors};

/// Largest accepted submission body (README, transcription-api "Routes": 413 over 64 KiB).
pub const MAX_SUBMISSION_BYTES: usize = 64 * 1024;
/// Page size when `limit` is not given, and the largest allowed.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

pub fn router(state: &AppState) -> Router<AppState> {
    let write = state.guard.require_scope(TRANSCRIPTIONS_WRITE);
    let read = state.guard.require_scope(TRANSCRIPTIONS_READ);
    Router::new()
        .route(
            "/transcriptions",
            post(create)
                .route_layer(write.clone())
                .merge(get(list).route_layer(read.clone())),
        )
        .route("/transcription", post(create).route_layer(write.clone()))
        .route("/transcriptions/{id}", get(show).route_layer(read))
        .route("/transcriptions/{id}/retry", post(retry).route_layer(write))
}

/// A transcription request: JSON or form fields.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // Documents the body; parsing is in `validate`.
pub struct SubmissionRequest {
    /// Where the result is e-mailed.
    #[schema(example = "ada@example.com")]
    email: String,
    /// Absolute http(s) URL of the audio (≤ 2048 bytes). The seed's name `audio-file-url` is
    /// accepted too.
    #[schema(example = "https://cdn.example.com/interview.wav")]
    audio_url: String,
}

/// The answer to an accepted submission.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub id: Uuid,
    /// Always `queued`.
    pub status: Status,
}

/// A transcription as its owner sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TranscriptionView {
    pub id: Uuid,
    pub status: Status,
    pub email: String,
    pub audio_url: String,
    /// Present once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    /// Present once failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the result was e-mailed: `pending`, then `sent` or `failed` (with a reason).
    pub notification: Notification,
    /// 1 at submission, one more each time you retried it after it failed.
    #[schema(example = 1)]
    pub attempt: u32,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<Transcription> for TranscriptionView {
    fn from(t: Transcription) -> Self {
        TranscriptionView {
            id: t.id,
            status: t.status,
            email: t.email,
            audio_url: t.audio_url,
            transcript: t.transcript,
            error: t.error,
            notification: t.notification,
            attempt: t.attempt,
            created_at: plumbing::rfc3339(t.created_at),
            updated_at: plumbing::rfc3339(t.updated_at),
        }
    }
}

/// One page of the caller's transcriptions, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TranscriptionPage {
    pub data: Vec<TranscriptionView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

fn caller(principal: &Principal) -> Caller {
    Caller {
        sub: principal.sub.clone(),
        client_id: principal.client_id.clone(),
    }
}

/// The request's `Idempotency-Key`, if any: given twice it is ambiguous (which request would a
/// replay answer?), so 400 as for a malformed key (draft-ietf-httpapi-idempotency-key-header §2).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all("idempotency-key").into_iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadRequest(
            "The Idempotency-Key header must be given once.".into(),
        ));
    }
    validate::check_idempotency_key(value.as_bytes())
        .map(Some)
        .map_err(ApiError::BadRequest)
}

/// Submit audio for transcription.
#[utoipa::path(
    post,
    path = "/transcriptions",
    tag = "transcriptions",
    request_body(content(
        (SubmissionRequest = "application/json"),
        (SubmissionRequest = "application/x-www-form-urlencoded"),
    )),
    params(("Idempotency-Key" = Option<String>, Header,
            description = "Repeat the request safely: the same key and body give the same answer for 24 h")),
    responses(
        (status = 202, description = "Stored and queued (at once, or by the outbox relay once the queue answers)", body = Accepted,
         headers(("Location" = String, description = "URL of the new transcription"))),
        (status = 400, description = "Unparseable body, or a malformed or repeated Idempotency-Key", body = ErrorBody),
        (status = 401, description = "No or invalid token"),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Neither JSON nor a form", body = ErrorBody),
        (status = 422, description = "Invalid or repeated fields, or the key was used with another body", body = ValidationErrors),
        (status = 409, description = "A request with this Idempotency-Key is still in flight", body = ErrorBody,
         headers(("Retry-After" = u32))),
        (status = 503, description = "Database unreachable; nothing was stored", body = ErrorBody,
         headers(("Retry-After" = u32))),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let bytes = read_body(&headers, body, MAX_SUBMISSION_BYTES).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let submission = validate::submission(content_type, &bytes)?;
    let submitted = state
        .transcriptions
        .submit(&caller(&principal), submission, key)
        .await?;
    accepted(submitted)
}

/// `202 {"id", "status": "queued"}` with `Location`, and `Idempotent-Replayed: true` for a
/// replayed answer.
fn accepted(submitted: Submitted) -> Result<Response, ApiError> {
    let (id, replayed) = match submitted {
        Submitted::Created(id) => (id, false),
        Submitted::Replayed(id) => (id, true),
    };
    let location = HeaderValue::try_from(format!("/transcriptions/{id}"))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(Accepted {
            id,
            status: Status::Queued,
        }),
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Retry one of your transcriptions that failed: it is queued again as a new attempt (a fresh
/// job), its notification back to `pending`.
#[utoipa::path(
    post,
    path = "/transcriptions/{id}/retry",
    tag = "transcriptions",
    params(
        ("id" = Uuid, Path, description = "Transcription id"),
        ("Idempotency-Key" = Option<String>, Header,
         description = "Repeat the request safely: the same key gives the same answer for 24 h"),
    ),
    responses(
        (status = 202, description = "Queued again (at once, or by the outbox relay once the queue answers)", body = Accepted,
         headers(("Location" = String, description = "URL of the transcription"))),
        (status = 400, description = "A malformed or repeated Idempotency-Key", body = ErrorBody),
        (status = 401, description = "No or invalid token"),
        (status = 404, description = "Unknown, or not yours", body = ErrorBody),
        (status = 409, description = "The transcription has not failed (queued, processing or completed), or a request with this Idempotency-Key is still in flight", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used with another request", body = ValidationErrors),
        (status = 503, description = "Database unreachable; nothing changed", body = ErrorBody,
         headers(("Retry-After" = u32))),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let submitted = state
        .transcriptions
        .retry(&caller(&principal), id, key)
        .await?;
    accepted(submitted)
}

/// Read one of your transcriptions.
#[utoipa::path(
    get,
    path = "/transcriptions/{id}",
    tag = "transcriptions",
    params(("id" = Uuid, Path, description = "Transcription id")),
    responses(
        (status = 200, description = "The transcription", body = TranscriptionView),
        (status = 401, description = "No or invalid token"),
        (status = 404, description = "Unknown, or not yours", body = ErrorBody),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<TranscriptionView>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let transcription = state
        .transcriptions
        .get(&principal.sub, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(transcription.into()))
}

/// A page cursor: base64url of the owner's last transcription id on the previous page. It names
/// a position among the caller's own transcriptions only, so it tells nothing about others';
/// a cursor of another owner or a tampered one is refused like a malformed one.
fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    Uuid::from_slice(&bytes).ok()
}

fn bad_cursor() -> ApiError {
    ApiError::Validation(FieldErrors::single(
        "cursor",
        "The cursor is not one this API gave out.",
    ))
}

/// `limit` and `cursor` of a list request.
fn page_params(query: Option<&str>) -> Result<(u32, Option<Uuid>), ApiError> {
    let mut errors = FieldErrors::default();
    let mut limit = DEFAULT_PAGE_SIZE;
    let mut cursor = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "limit" => match value.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => limit = n,
                _ => errors.add(
                    "limit",
                    format!("The limit must be an integer from 1 to {MAX_PAGE_SIZE}."),
                ),
            },
            "cursor" => match decode_cursor(&value) {
                Some(id) => cursor = Some(id),
                None => errors.add("cursor", "The cursor is not one this API gave out."),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok((limit, cursor))
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// List your transcriptions, newest first.
#[utoipa::path(
    get,
    path = "/transcriptions",
    tag = "transcriptions",
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1–100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page", body = TranscriptionPage,
         headers(("Link" = String, description = "rel=\"next\" URL when there is a next page"))),
        (status = 401, description = "No or invalid token"),
        (status = 422, description = "Bad limit or cursor", body = ValidationErrors),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (limit, after) = page_params(query.as_deref())?;
    let page = state
        .transcriptions
        .list(&principal.sub, after, limit)
        .await?
        .ok_or_else(bad_cursor)?;
    let next_cursor = page.next_cursor.map(encode_cursor);
    let link = next_cursor.as_ref().and_then(|cursor| {
        HeaderValue::try_from(format!(
            "</transcriptions?limit={limit}&cursor={cursor}>; rel=\"next\""
        ))
        .ok()
    });
    let mut response = Json(TranscriptionPage {
        data: page.items.into_iter().map(Into::into).collect(),
        next_cursor,
    })
    .into_response();
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}
