//! `GET`/`POST /oauth/userinfo` (OIDC Core §5.3): the signed-in user's claims, by the scopes
//! of the access token presented as an RFC 6750 bearer token (header, or `access_token` in a
//! form body). Errors are RFC 6750 §3: 401 `invalid_token` for a missing, invalid, expired or
//! revoked token or a user that no longer exists; 403 `insufficient_scope` without `openid`
//! (a client_credentials token never has a user).

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::extract::State;
use axum::routing::get;
use plumbing::http::read_body;
use serde_json::json;
use time::OffsetDateTime;
use token_guard::RevocationSubject;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth/userinfo", get(userinfo_get).post(userinfo_post))
}

async fn userinfo_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    userinfo(&state, bearer(&headers)).await
}

async fn userinfo_post(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let Ok(body) = read_body(&headers, body, 16 * 1024).await else {
        return challenge(StatusCode::PAYLOAD_TOO_LARGE, Some("invalid_request"));
    };
    let from_body = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "access_token")
        .map(|(_, value)| value.into_owned());
    match (bearer(&headers), from_body) {
        // RFC 6750 §2: one method per request.
        (Some(_), Some(_)) => challenge(StatusCode::BAD_REQUEST, Some("invalid_request")),
        (Some(token), None) => userinfo(&state, Some(token)).await,
        (None, token) => userinfo(&state, token).await,
    }
}

/// The `Authorization: Bearer` token, if the header has that scheme.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

async fn userinfo(state: &AppState, token: Option<String>) -> Response {
    let Some(token) = token else {
        return challenge(StatusCode::UNAUTHORIZED, None);
    };
    let tokens = &state.tokens;
    let keys = tokens.keys.current();
    let Ok(claims) = tokens
        .rules
        .check_shape(&token)
        .and_then(|_| tokens.rules.verify(&token, |kid| keys.public_key(kid)))
    else {
        return challenge(StatusCode::UNAUTHORIZED, Some("invalid_token"));
    };
    let subject = RevocationSubject::new(&claims.jti, &claims.sub, &claims.client_id, claims.iat);
    match tokens
        .deny_list
        .is_revoked(&subject, OffsetDateTime::now_utc().unix_timestamp())
        .await
    {
        Ok(false) => {}
        Ok(true) => return challenge(StatusCode::UNAUTHORIZED, Some("invalid_token")),
        Err(err) => {
            tracing::error!(error = %err, "userinfo: reading the deny-list failed");
            return unavailable();
        }
    }
    let scopes: Vec<&str> = claims.scope.split(' ').collect();
    if !scopes.contains(&"openid") {
        return challenge(StatusCode::FORBIDDEN, Some("insufficient_scope"));
    }
    let user = match state.store.find_user(&claims.sub).await {
        Ok(Some(user)) if !user.disabled => user,
        Ok(_) => return challenge(StatusCode::UNAUTHORIZED, Some("invalid_token")),
        Err(err) => {
            tracing::error!(error = %err, "userinfo: reading the user failed");
            return unavailable();
        }
    };
    let mut body = json!({ "sub": user.id });
    if scopes.contains(&"profile")
        && let Some(name) = &user.display_name
    {
        body["name"] = json!(name);
    }
    if scopes.contains(&"email") {
        body["email"] = json!(user.email);
        body["email_verified"] = json!(user.email_verified);
    }
    super::json_response(StatusCode::OK, body.to_string(), "no-store")
}

/// An RFC 6750 §3 answer: `WWW-Authenticate: Bearer realm="oauth"` with the error, if any
/// (§3.1: none when the request carried no token).
fn challenge(status: StatusCode, error: Option<&str>) -> Response {
    let value = match error {
        None => "Bearer realm=\"oauth\"".to_owned(),
        Some("insufficient_scope") => {
            "Bearer realm=\"oauth\", error=\"insufficient_scope\", scope=\"openid\"".to_owned()
        }
        Some(error) => format!("Bearer realm=\"oauth\", error=\"{error}\""),
    };
    let mut response = status.into_response();
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
    )
        .into_response()
}
