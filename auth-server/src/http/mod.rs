//! HTTP surface of the auth server: one router per concern, merged here.

mod discovery;
mod error;
mod health;
mod token;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// The complete route table.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(token::router())
        .merge(discovery::router())
        .merge(health::router())
        .with_state(state)
}

/// A JSON response with a fixed `Cache-Control`.
fn json_response(
    status: axum::http::StatusCode,
    body: String,
    cache_control: &'static str,
) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(cache_control),
            ),
        ],
        body,
    )
        .into_response()
}
