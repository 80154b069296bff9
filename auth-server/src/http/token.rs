//! `POST /oauth/token`: reads a bounded form body and hands it to the grants.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::TokenEndpointError;
use crate::AppState;
use crate::grants::{GrantError, TokenRequest};

/// Largest accepted token request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth/token", post(token))
}

async fn token(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match exchange(&state, &headers, body).await {
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

async fn exchange(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<String, TokenEndpointError> {
    if !is_form(headers) {
        return Err(GrantError::InvalidRequest(
            "content type must be application/x-www-form-urlencoded".into(),
        )
        .into());
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(TokenEndpointError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(TokenEndpointError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        Err(_) => {
            return Err(
                GrantError::InvalidRequest("could not read the request body".into()).into(),
            );
        }
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let request = TokenRequest::from_form(&bytes, authorization)?;
    let response = state.tokens.exchange(&request).await?;
    serde_json::to_string(&response)
        .map_err(|_| GrantError::InvalidRequest("unserializable response".into()).into())
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
