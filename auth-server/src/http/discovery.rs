//! `GET /.well-known/jwks.json`, `GET /.well-known/oauth-authorization-server` (RFC 8414) and
//! `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4): one document,
//! served at both.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use crate::AppState;
use crate::grants::SUPPORTED_GRANT_TYPES;
use crate::signin::pkce;

/// How long clients may cache the JWKS. A `next` key must be published at least this long
/// before `keys rotate` makes it sign.
pub const JWKS_CACHE_CONTROL: &str = "public, max-age=300";

/// Client authentication methods of every endpoint that authenticates clients.
const AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// The token endpoint also admits public clients (`none`: `client_id` alone, PKCE required).
const TOKEN_AUTH_METHODS: [&str; 3] = ["client_secret_basic", "client_secret_post", "none"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(metadata))
}

/// The metadata at RFC 8414 §3's location for an issuer with a path: the well-known suffix
/// goes between the host and the issuer's path.
pub fn path_inserted_metadata(issuer_path: &str) -> Router<AppState> {
    Router::new()
        .route(
            &format!("/.well-known/oauth-authorization-server{issuer_path}"),
            get(metadata),
        )
        .route(
            &format!("/.well-known/openid-configuration{issuer_path}"),
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
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "end_session_endpoint": format!("{issuer}/oauth/logout"),
        "grant_types_supported": SUPPORTED_GRANT_TYPES.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "scopes_supported": scopes,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": [pkce::S256],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "amr", "azp",
            "name", "email", "email_verified"
        ],
        "authorization_response_iss_parameter_supported": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
    });
    super::json_response(StatusCode::OK, body.to_string(), "public, max-age=60")
}
