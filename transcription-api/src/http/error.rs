//! The one HTTP error type of the API: every refusal is decided and logged here.
//!
//! Bodies: `422 {"errors": {field: [message…]}}` for validation, otherwise
//! `{"error": code, "message": text}` with codes `invalid_request` (400), `not_found` (404),
//! `conflict` (409), `payload_too_large` (413), `unsupported_media_type` (415),
//! `service_unavailable` (503, with `Retry-After`) and `internal_error` (500, details only in
//! the log).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;
use crate::submissions::SubmitError;
use crate::validate::{BodyError, FieldErrors};

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

/// `{"error": code, "message": text}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: &'static str,
    pub message: String,
}

/// `{"errors": {"email": ["…"], "audio_url": ["…"]}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ValidationErrors {
    #[schema(value_type = Object, example = json!({"email": ["The email field must be a valid email address."]}))]
    pub errors: FieldErrors,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// 409 with `Retry-After`: a request with the same `Idempotency-Key` has not answered yet
    /// (IETF Idempotency-Key draft, section 2.6).
    #[error("a request with this idempotency key is in flight")]
    InFlight { retry_after_secs: u64 },
    #[error("the body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("unsupported media type")]
    UnsupportedMediaType(&'static str),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::Invalid(errors) => ApiError::Validation(errors),
            BodyError::Malformed(message) => ApiError::BadRequest(message),
            BodyError::UnsupportedMediaType => ApiError::UnsupportedMediaType(
                "application/json or application/x-www-form-urlencoded",
            ),
        }
    }
}

/// A body read up to its limit ([`plumbing::http::read_body`]): 413 beyond the limit, 400 when
/// it breaks off.
impl From<plumbing::http::BodyError> for ApiError {
    fn from(err: plumbing::http::BodyError) -> Self {
        match err {
            plumbing::http::BodyError::TooLarge { limit } => ApiError::PayloadTooLarge(limit),
            plumbing::http::BodyError::Unreadable => {
                ApiError::BadRequest("could not read the request body".into())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::Database(e) if database_unavailable(e) => {
                ApiError::Unavailable(format!("the database is unavailable: {err}"))
            }
            _ => ApiError::Internal(err.to_string()),
        }
    }
}

/// Whether the database could not serve the request at all, which the README promises as 503
/// `service_unavailable` ("Errors"): no connection within the pool's timeout (the server is
/// down, refuses connections or does not answer), the connection lost, or PostgreSQL ending
/// the session with a `FATAL` (or `PANIC`) error: shutting down, `pg_terminate_backend`, a
/// database that does not accept connections (`ALLOW_CONNECTIONS false`).
fn database_unavailable(err: &sqlx::Error) -> bool {
    use sqlx::postgres::{PgDatabaseError, PgSeverity};
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<PgDatabaseError>()
            .is_some_and(|pg| matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic)),
        _ => false,
    }
}

impl From<SubmitError> for ApiError {
    fn from(err: SubmitError) -> Self {
        match err {
            SubmitError::KeyReused => ApiError::Validation(FieldErrors::single(
                "idempotency_key",
                "This Idempotency-Key was already used with a different request.",
            )),
            SubmitError::InFlight { retry_after_secs } => ApiError::InFlight { retry_after_secs },
            SubmitError::NotFailed(status) => ApiError::Conflict(format!(
                "Only a failed transcription can be retried; this one is {status}."
            )),
            SubmitError::NotFound => ApiError::NotFound,
            SubmitError::Store(e) => e.into(),
        }
    }
}

fn body(status: StatusCode, error: &'static str, message: String) -> Response {
    (status, Json(ErrorBody { error, message })).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Validation(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(ValidationErrors { errors }),
            )
                .into_response(),
            ApiError::BadRequest(message) => {
                body(StatusCode::BAD_REQUEST, "invalid_request", message)
            }
            ApiError::NotFound => body(
                StatusCode::NOT_FOUND,
                "not_found",
                "No such transcription.".into(),
            ),
            ApiError::Conflict(message) => body(StatusCode::CONFLICT, "conflict", message),
            ApiError::InFlight { retry_after_secs } => {
                let mut response = body(
                    StatusCode::CONFLICT,
                    "conflict",
                    "A request with this Idempotency-Key is still being processed; retry later."
                        .into(),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                response
            }
            ApiError::PayloadTooLarge(limit) => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("The body must not exceed {limit} bytes."),
            ),
            ApiError::UnsupportedMediaType(expected) => body(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Send the body as {expected}."),
            ),
            ApiError::Unavailable(reason) => {
                tracing::warn!(%reason, "answering 503");
                let mut response = body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "The service cannot take this request now; retry later.".into(),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                response
            }
            ApiError::Internal(reason) => {
                tracing::error!(%reason, "internal error");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "Something went wrong on our side.".into(),
                )
            }
        }
    }
}
