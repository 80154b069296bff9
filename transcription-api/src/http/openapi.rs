//! `GET /openapi.json`: the API description, generated from the handlers' annotations.

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "transcription-api",
        description = "Submit audio for transcription and read the results. Every route but the \
                       operational ones takes an OAuth2 access token (JWT) from the auth server."
    ),
    paths(
        super::transcriptions::create,
        super::transcriptions::show,
        super::transcriptions::list,
        super::transcriptions::retry,
        super::internal::report,
        super::internal::notification,
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "transcriptions", description = "For token holders"),
        (name = "internal", description = "For the worker (transcriber and notifier)"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn router() -> Router<AppState> {
    let document = ApiDoc::openapi();
    Router::new().route(
        "/openapi.json",
        get(move || {
            let document = document.clone();
            async move { Json(document) }
        }),
    )
}
