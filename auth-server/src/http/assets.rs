//! `GET /oauth/assets/style.css`: the sign-in pages' stylesheet ([`crate::pages`]), the
//! operator's or the built-in one.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

/// Path of the stylesheet, below the issuer's path; the pages link it as
/// `{issuer}/oauth/assets/style.css`.
pub const STYLESHEET_PATH: &str = "/oauth/assets/style.css";

/// How long browsers may cache the stylesheet (it changes only with a restart).
pub const STYLESHEET_CACHE_CONTROL: &str = "public, max-age=3600";

pub fn router() -> Router<AppState> {
    Router::new().route(STYLESHEET_PATH, get(stylesheet))
}

async fn stylesheet(State(state): State<AppState>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(STYLESHEET_CACHE_CONTROL),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        state.pages.stylesheet().to_owned(),
    )
        .into_response()
}
