//! `GET /openapi.json`: the API description, generated from the handlers' annotations and the
//! `contracts` types of the bodies. The scope each protected route requires is filled in from
//! the constants its router enforces ([`REQUIRED_SCOPES`]), not written out in the annotations.

use axum::Json;
use axum::Router;
use axum::routing::get;
use contracts::scopes::{TRANSCRIPTIONS_READ, TRANSCRIPTIONS_REPORT, TRANSCRIPTIONS_WRITE};
use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::AppState;

/// The security scheme of the access tokens (RFC 6750 bearer JWTs).
const BEARER: &str = "bearer";

/// The scope each token-protected operation requires, as its router enforces it
/// (`require_scope`): documented as the operation's `bearer` security requirement and its 403
/// answer.
const REQUIRED_SCOPES: [(&str, HttpMethod, &str); 6] = [
    ("/transcriptions", HttpMethod::Post, TRANSCRIPTIONS_WRITE),
    ("/transcriptions", HttpMethod::Get, TRANSCRIPTIONS_READ),
    ("/transcriptions/{id}", HttpMethod::Get, TRANSCRIPTIONS_READ),
    (
        "/transcriptions/{id}/retry",
        HttpMethod::Post,
        TRANSCRIPTIONS_WRITE,
    ),
    (
        "/internal/transcriptions/{id}/result",
        HttpMethod::Put,
        TRANSCRIPTIONS_REPORT,
    ),
    (
        "/internal/transcriptions/{id}/notification",
        HttpMethod::Put,
        TRANSCRIPTIONS_REPORT,
    ),
];

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
    modifiers(&BearerScopes),
    tags(
        (name = "transcriptions", description = "For token holders"),
        (name = "internal", description = "For the worker (transcriber and notifier)"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` scheme and, to each operation of [`REQUIRED_SCOPES`], its scope.
struct BearerScopes;

impl Modify for BearerScopes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for (path, method, scope) in REQUIRED_SCOPES {
            let Some(operation) = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| operation_mut(item, &method))
            else {
                continue;
            };
            operation.security = Some(vec![SecurityRequirement::new(BEARER, [scope])]);
            operation.responses.responses.insert(
                "403".to_owned(),
                RefOr::T(Response::new(format!("Token lacks {scope}"))),
            );
        }
    }
}

/// The operation of `item` for `method`, if it has one.
fn operation_mut<'a>(item: &'a mut PathItem, method: &HttpMethod) -> Option<&'a mut Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        HttpMethod::Options => item.options.as_mut(),
        HttpMethod::Head => item.head.as_mut(),
        HttpMethod::Patch => item.patch.as_mut(),
        HttpMethod::Trace => item.trace.as_mut(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation that takes a token (it answers 401) names the scope its router demands,
    /// and every entry of [`REQUIRED_SCOPES`] is an operation of the document.
    #[test]
    fn every_protected_operation_names_its_scope() {
        let document = ApiDoc::openapi();
        for (path, method, scope) in REQUIRED_SCOPES {
            let mut item = document.paths.paths.get(path).cloned().unwrap();
            let operation = operation_mut(&mut item, &method).unwrap();
            assert_eq!(
                serde_json::to_value(&operation.security).unwrap(),
                serde_json::json!([{"bearer": [scope]}]),
                "{path}"
            );
            assert!(operation.responses.responses.contains_key("403"), "{path}");
        }
        let mut protected = 0;
        for item in document.paths.paths.values() {
            let operations = [&item.get, &item.post, &item.put, &item.delete, &item.patch];
            for operation in operations.into_iter().flatten() {
                if operation.responses.responses.contains_key("401") {
                    protected += 1;
                    assert!(operation.security.is_some(), "{:?}", operation.operation_id);
                }
            }
        }
        assert_eq!(protected, REQUIRED_SCOPES.len());
    }
}
