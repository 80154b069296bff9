//! axum integration: the [`Principal`] extractor, the per-route [`RequireScopeLayer`] and
//! [`AuthError`], which answers RFC 6750 §3 challenges:
//!
//! - no bearer token: 401 `WWW-Authenticate: Bearer realm="…"` (no error code);
//! - a bad, expired, revoked or malformed token: 401 `…, error="invalid_token",
//!   error_description="…"`;
//! - a valid token without the route's scope: 403 `…, error="insufficient_scope", scope="…"`.
//!
//! Nothing in a request can make these paths fail: non-UTF-8 headers, other schemes, garbage
//! and oversized tokens all end in one of the answers above.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::verify::VerifyError;
use crate::{Principal, TokenGuard};

/// What was wrong with the request's credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` credentials at all.
    #[error("no bearer token")]
    MissingToken,
    /// Credentials were sent but are not a valid token.
    #[error(transparent)]
    InvalidToken(#[from] VerifyError),
    /// The token is valid but does not grant this scope.
    #[error("the token does not grant the scope {0}")]
    InsufficientScope(String),
}

/// A refused request, rendered as an RFC 6750 answer.
#[derive(Debug, Clone)]
pub struct AuthError {
    realm: Arc<str>,
    failure: AuthFailure,
}

impl AuthError {
    pub fn new(realm: Arc<str>, failure: AuthFailure) -> AuthError {
        AuthError { realm, failure }
    }

    pub fn failure(&self) -> &AuthFailure {
        &self.failure
    }
}

/// Makes `value` fit inside a quoted-string.
fn quoted(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let realm = quoted(&self.realm);
        let (status, challenge, body) = match &self.failure {
            AuthFailure::MissingToken => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer realm=\"{realm}\""),
                None,
            ),
            AuthFailure::InvalidToken(reason) => {
                let description = reason.to_string();
                (
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                        quoted(&description)
                    ),
                    Some(
                        serde_json::json!({"error": "invalid_token", "error_description": description}),
                    ),
                )
            }
            AuthFailure::InsufficientScope(scope) => (
                StatusCode::FORBIDDEN,
                format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
                    quoted(scope)
                ),
                Some(serde_json::json!({
                    "error": "insufficient_scope",
                    "error_description": self.failure.to_string(),
                    "scope": scope,
                })),
            ),
        };
        tracing::debug!(status = status.as_u16(), reason = %self.failure, "request refused");
        let mut response = match body {
            Some(body) => {
                let mut response = (status, body.to_string()).into_response();
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            None => status.into_response(),
        };
        let challenge = HeaderValue::from_str(&challenge)
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        let headers = response.headers_mut();
        headers.insert(WWW_AUTHENTICATE, challenge);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The token of `Authorization: Bearer <token>`. Only an absent header or another scheme
/// counts as "no token"; anything else that is not a single well-formed token is invalid.
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthFailure> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthFailure::MissingToken);
    };
    if values.next().is_some() {
        return Err(VerifyError::Malformed.into());
    }
    let bytes = value.as_bytes();
    let (scheme, rest) = match bytes.iter().position(|b| *b == b' ') {
        Some(at) => (&bytes[..at], &bytes[at..]),
        None => (bytes, &bytes[bytes.len()..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthFailure::MissingToken);
    }
    let token = std::str::from_utf8(rest)
        .map_err(|_| VerifyError::Malformed)?
        .trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(VerifyError::Malformed.into());
    }
    Ok(token)
}

impl TokenGuard {
    /// The principal of the request's bearer token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let token = bearer_token(headers).map_err(|f| AuthError::new(self.realm(), f))?;
        self.verify(token)
            .await
            .map_err(|reason| AuthError::new(self.realm(), reason.into()))
    }

    /// The principal of the request's bearer token, which must grant `scope`.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        scope: &str,
    ) -> Result<Principal, AuthError> {
        let principal = self.authenticate(headers).await?;
        self.check_scope(principal, scope)
    }

    fn check_scope(&self, principal: Principal, scope: &str) -> Result<Principal, AuthError> {
        if principal.has_scope(scope) {
            Ok(principal)
        } else {
            Err(AuthError::new(
                self.realm(),
                AuthFailure::InsufficientScope(scope.to_owned()),
            ))
        }
    }
}

/// Extracts the caller: taken from a [`RequireScopeLayer`] that already verified the request,
/// or verified here with the [`TokenGuard`] of the router state.
impl<S> FromRequestParts<S> for Principal
where
    TokenGuard: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let principal = TokenGuard::from_ref(state)
            .authenticate(&parts.headers)
            .await?;
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// Builds [`RequireScope`] services; made by [`TokenGuard::require_scope`].
#[derive(Debug, Clone)]
pub struct RequireScopeLayer {
    guard: TokenGuard,
    scope: Arc<str>,
}

impl RequireScopeLayer {
    pub(crate) fn new(guard: TokenGuard, scope: String) -> RequireScopeLayer {
        RequireScopeLayer {
            guard,
            scope: scope.into(),
        }
    }
}

impl<S> tower_layer::Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> RequireScope<S> {
        RequireScope {
            inner,
            guard: self.guard.clone(),
            scope: self.scope.clone(),
        }
    }
}

/// Answers 401/403 unless the request carries a valid token granting the scope; otherwise
/// stores the [`Principal`] in the request extensions and calls the inner service. Stacked
/// layers require every one of their scopes and verify the token once.
#[derive(Debug, Clone)]
pub struct RequireScope<S> {
    inner: S,
    guard: TokenGuard,
    scope: Arc<str>,
}

impl<S> tower_service::Service<Request<Body>> for RequireScope<S>
where
    S: tower_service::Service<Request<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone is ready only if polled; keep the polled one (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        let scope = self.scope.clone();
        Box::pin(async move {
            let known = request.extensions().get::<Principal>().cloned();
            let principal = match known {
                Some(principal) => Ok(principal),
                None => guard.authenticate(request.headers()).await,
            };
            match principal.and_then(|p| guard.check_scope(p, &scope)) {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await.map(IntoResponse::into_response)
                }
                Err(refusal) => Ok(refusal.into_response()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    #[test]
    fn bearer_tokens_are_found_or_refused() {
        assert_eq!(bearer_token(&headers(&[b"Bearer a.b.c"])), Ok("a.b.c"));
        assert_eq!(bearer_token(&headers(&[b"bearer  a.b.c "])), Ok("a.b.c"));
        assert_eq!(bearer_token(&headers(&[])), Err(AuthFailure::MissingToken));
        assert_eq!(
            bearer_token(&headers(&[b"Basic dTpw"])),
            Err(AuthFailure::MissingToken)
        );
        let malformed = Err(AuthFailure::InvalidToken(VerifyError::Malformed));
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer a b",
            b"Bearer \xff\xfe",
        ] {
            assert_eq!(bearer_token(&headers(&[bad])), malformed, "{bad:?}");
        }
        assert_eq!(
            bearer_token(&headers(&[b"Bearer a", b"Bearer b"])),
            malformed
        );
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        let realm: Arc<str> = "api".into();
        let challenge = |failure| {
            let response = AuthError::new(realm.clone(), failure).into_response();
            let header = response.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .to_owned();
            (response.status(), header)
        };
        assert_eq!(
            challenge(AuthFailure::MissingToken),
            (StatusCode::UNAUTHORIZED, "Bearer realm=\"api\"".to_owned())
        );
        assert_eq!(
            challenge(VerifyError::Expired.into()),
            (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the token has expired\"".to_owned()
            )
        );
        assert_eq!(
            challenge(AuthFailure::InsufficientScope("a:b".into())),
            (
                StatusCode::FORBIDDEN,
                "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"a:b\"".to_owned()
            )
        );
        assert_eq!(quoted("a\"b\\c\u{7f}é"), "a\\\"b\\\\c");
    }
}
