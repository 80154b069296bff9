//! HTTP surface of the auth server: one router per concern, merged here.

mod assets;
mod discovery;
mod error;
mod health;
mod token;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// The complete route table. An issuer with a path (`https://host/tenant`) also gets every
/// route under that path, where its metadata advertises them, and its metadata at the
/// path-inserted location of RFC 8414 §3 (`/.well-known/oauth-authorization-server/tenant`).
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .merge(token::router())
        .merge(discovery::router())
        .merge(health::router())
        .merge(assets::router());
    let path = crate::issuer::issuer_path(&state.issuer).to_owned();
    let app = if path.is_empty() {
        routes
    } else {
        routes
            .clone()
            .nest(&path, routes)
            .merge(discovery::path_inserted_metadata(&path))
    };
    app.layer(axum::middleware::from_fn(crate::telemetry::record_requests))
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
