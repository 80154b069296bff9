//! `POST /oauth/token`, `POST /oauth/introspect` and `POST /oauth/revoke`: read a bounded
//! form body and hand it to the grants.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use plumbing::http::{BodyError, read_body};

use super::error::TokenEndpointError;
use crate::AppState;
use crate::grants::{GrantError, TokenRequest};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/revoke", post(revoke))
}

async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let request = read_form(&headers, body).await?.with_client_ip(peer.ip());
        let response = state.tokens.exchange(&request).await?;
        Ok::<_, TokenEndpointError>(serde_json::to_string(&response).unwrap_or_default())
    };
    let result = result.await;
    if let Err(err) = &result {
        metrics::counter!("oauth_token_errors_total", "error" => err.code()).increment(1);
    }
    respond(result)
}

async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let request = read_form(&headers, body).await?;
        Ok::<_, TokenEndpointError>(state.tokens.introspect(&request).await?.to_string())
    };
    respond(result.await)
}

async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let request = read_form(&headers, body).await?;
        state.tokens.revoke(&request).await?;
        Ok::<_, TokenEndpointError>(String::new())
    };
    match result.await {
        Ok(_) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        )
            .into_response(),
        Err(err) => err.into_response(),
    }
}

/// A JSON body with `no-store`, or the error.
fn respond(result: Result<String, TokenEndpointError>) -> Response {
    match result {
        Ok(body) => {
            let mut response = super::json_response(StatusCode::OK, body, "no-store");
            response
                .headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(err) => err.into_response(),
    }
}

/// Reads an `application/x-www-form-urlencoded` body of at most [`MAX_BODY_BYTES`].
async fn read_form(headers: &HeaderMap, body: Body) -> Result<TokenRequest, TokenEndpointError> {
    if !is_form(headers) {
        return Err(GrantError::InvalidRequest(
            "content type must be application/x-www-form-urlencoded",
        )
        .into());
    }
    let bytes = read_body(headers, body, MAX_BODY_BYTES)
        .await
        .map_err(|err| match err {
            BodyError::TooLarge { limit } => TokenEndpointError::PayloadTooLarge(limit),
            BodyError::Unreadable => {
                GrantError::InvalidRequest("could not read the request body").into()
            }
        })?;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    Ok(TokenRequest::from_form(&bytes, authorization)?)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}
