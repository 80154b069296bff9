//! The one place where token-endpoint failures become HTTP responses: RFC 6749 §5.2 JSON,
//! `Cache-Control: no-store`, `WWW-Authenticate: Basic` on `invalid_client`. Server-side
//! failures are logged here, once, and answered without detail.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::grants::GrantError;

/// What the token endpoint can answer besides a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenEndpointError {
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<String>,
}

impl TokenEndpointError {
    /// The RFC 6749 §5.2 `error` code of the answer.
    pub fn code(&self) -> &'static str {
        match self {
            TokenEndpointError::PayloadTooLarge(_) => "invalid_request",
            TokenEndpointError::Grant(grant) => grant.code(),
        }
    }
}

impl IntoResponse for TokenEndpointError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            TokenEndpointError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request")
            }
            TokenEndpointError::Grant(grant) => {
                let status = match grant {
                    GrantError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
                    GrantError::LoginThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
                    GrantError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    GrantError::Store(_)
                    | GrantError::Key(_)
                    | GrantError::Hashing
                    | GrantError::DenyList(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::BAD_REQUEST,
                };
                (status, grant.code())
            }
        };
        let retry_after = match &self {
            TokenEndpointError::Grant(
                GrantError::LoginThrottled { retry_after } | GrantError::Busy { retry_after },
            ) => Some(*retry_after),
            _ => None,
        };
        let description = if status.is_server_error() {
            tracing::error!(error = %self, "token request failed");
            None
        } else {
            Some(error_description(&self.to_string()))
        };
        let body = serde_json::to_string(&ErrorBody {
            error: code,
            error_description: description,
        })
        .unwrap_or_default();
        let mut response = super::json_response(status, body, "no-store");
        let headers = response.headers_mut();
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oauth\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

/// Builds every `error_description` the auth server sends: the error's fixed text (see
/// [`GrantError`]: it never quotes the request), reduced to the characters RFC 6749 §5.2
/// allows, `%x20-21 / %x23-5B / %x5D-7E`; anything else becomes `?`.
pub fn error_description(text: &str) -> String {
    text.chars()
        .map(|c| if is_description_char(c) { c } else { '?' })
        .collect()
}

/// Whether `c` may appear in an `error_description` (RFC 6749 §5.2).
pub fn is_description_char(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{21}' | '\u{23}'..='\u{5B}' | '\u{5D}'..='\u{7E}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_keep_only_the_rfc_6749_characters() {
        assert_eq!(
            error_description("missing parameter `token`"),
            "missing parameter `token`"
        );
        assert_eq!(error_description("a\"b\\c\u{0}d\u{e9}\n"), "a?b?c?d??");
    }
}
