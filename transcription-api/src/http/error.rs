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
pub enum GatewayError {
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

impl From<BodyError> for GatewayError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::Invalid(errors) => GatewayError::Validation(errors),
            BodyError::Malformed(message) => GatewayError::BadRequest(message),
            BodyError::UnsupportedMediaType => GatewayError::UnsupportedMediaType(
                "application/json or application/x-www-form-urlencoded",
            ),
        }
    }
}

/// A body read up to its limit ([`plumbing::http::read_body`]): 413 beyond the limit, 400 when
/// it breaks off.
impl From<plumbing::http::BodyError> for GatewayError {
    fn from(err: plumbing::http::BodyError) -> Self {
        match err {
            plumbing::http::BodyError::TooLarge { limit } => GatewayError::PayloadTooLarge(limit),
            plumbing::http::BodyError::Unreadable => {
                GatewayError::BadRequest("could not read the request body".into())
            }
        }
    }
}

impl From<StoreError> for GatewayError {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::Database(e) if database_unavailable(e) => {
                GatewayError::Unavailable(format!("the database is unavailable: {err}"))
            }
            _ => GatewayError::Internal(err.to_string()),
        }
    }
}

/// Whether the database could not serve the request at all, which the README promises as 503
/// `service_unavailable` ("Errors"): no connection within the pool's timeout (the server is
/// down, refuses connections or does not answer), the connection lost, or PostgreSQL ending
/// the session with a `FATAL` (or `PANIC`) error: shutting down, `pg_terminate_backend`, a
/// database that does not accept connections (`ALLOW_CONNECTIONS false`). A protocol or TLS
/// error is the same outage seen from the wire: a connection cut in the middle of a message, or
/// a proxy or pooler that accepts the connection and closes it because it has no server behind
/// it; the request itself cannot cause either, so repeating it later is the right answer.
fn database_unavailable(err: &sqlx::Error) -> bool {
    use sqlx::postgres::{PgDatabaseError, PgSeverity};
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<PgDatabaseError>()
            .is_some_and(|pg| matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic)),
        _ => false,
    }
}

impl From<SubmitError> for GatewayError {
    fn from(err: SubmitError) -> Self {
        match err {
            SubmitError::KeyReused => GatewayError::Validation(FieldErrors::single(
                "idempotency_key",
                "This Idempotency-Key was already used with a different request.",
            )),
            SubmitError::InFlight { retry_after_secs } => {
                GatewayError::InFlight { retry_after_secs }
            }
            SubmitError::NotFailed(status) => GatewayError::Conflict(format!(
                "Only a failed transcription can be retried; this one is {status}."
            )),
            SubmitError::NotFound => GatewayError::NotFound,
            SubmitError::Store(e) => e.into(),
        }
    }
}

fn body(status: StatusCode, error: &'static str, message: String) -> Response {
    (status, Json(ErrorBody { error, message })).into_response()
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        match self {
            GatewayError::Validation(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(ValidationErrors { errors }),
            )
                .into_response(),
            GatewayError::BadRequest(message) => {
                body(StatusCode::BAD_REQUEST, "invalid_request", message)
            }
            GatewayError::NotFound => body(
                StatusCode::NOT_FOUND,
                "not_found",
                "No such transcription.".into(),
            ),
            GatewayError::Conflict(message) => body(StatusCode::CONFLICT, "conflict", message),
            GatewayError::InFlight { retry_after_secs } => {
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
            GatewayError::PayloadTooLarge(limit) => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("The body must not exceed {limit} bytes."),
            ),
            GatewayError::UnsupportedMediaType(expected) => body(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Send the body as {expected}."),
            ),
            GatewayError::Unavailable(reason) => {
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
            GatewayError::Internal(reason) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Which database errors are an outage (503 + `Retry-After`) and which stay internal.
    #[test]
    fn database_outages_are_503_and_everything_else_is_internal() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let cases: Vec<(sqlx::Error, bool)> = vec![
            (sqlx::Error::PoolTimedOut, true),
            (sqlx::Error::PoolClosed, true),
            (sqlx::Error::Io(io()), true),
            (
                sqlx::Error::Protocol("unexpected response from SSLRequest".into()),
                true,
            ),
            (sqlx::Error::Tls(Box::new(io())), true),
            (sqlx::Error::RowNotFound, false),
            (sqlx::Error::ColumnNotFound("id".into()), false),
        ];
        for (err, outage) in cases {
            assert_eq!(database_unavailable(&err), outage, "{err}");
        }
    }
}
