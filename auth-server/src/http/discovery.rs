//! `GET /.well-known/jwks.json` and `GET /.well-known/oauth-authorization-server` (RFC 8414).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use crate::AppState;
use crate::grants::SUPPORTED_GRANT_TYPES;

/// How long clients may cache the JWKS. A `next` key must be published at least this long
/// before `keys rotate` makes it sign.
pub const JWKS_CACHE_CONTROL: &str = "public, max-age=300";

/// Client authentication methods of every endpoint that authenticates clients.
const AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(metadata))
}

/// The metadata at RFC 8414 §3's location for an issuer with a path: the well-known suffix
/// goes between the host and the issuer's path.
pub fn path_inserted_metadata(issuer_path: &str) -> Router<AppState> {
    Router::new().route(
        &format!("/.well-known/oauth-authorization-server{issuer_path}"),
        get(metadata),
    )
}

async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.keys.current().jwks.to_string();
    super::json_response(StatusCode::OK, body, JWKS_CACHE_CONTROL)
}

async fn metadata(State(state): State<AppState>) -> Response {
    let scopes = match state.store.list_scopes().await {
        Ok(scopes) => scopes.into_iter().map(|s| s.name).collect::<Vec<_>>(),
        Err(err) => {
            tracing::error!(error = %err, "listing scopes for metadata failed");
            return super::json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "temporarily_unavailable"}).to_string(),
                "no-store",
            );
        }
    };
    let issuer: &str = &state.issuer;
    let body = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": SUPPORTED_GRANT_TYPES.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        // REQUIRED and non-empty for strict clients; no authorization endpoint returns any
        // credential (docs/decisions.md, "Metadata without an authorization endpoint").
        "response_types_supported": ["none"],
        "scopes_supported": scopes,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
    });
    super::json_response(StatusCode::OK, body.to_string(), "public, max-age=60")
}
