//! The authorization endpoint (`GET`/`POST /oauth/authorize`, RFC 6749 §4.1.1, OIDC Core
//! §3.1.2.1) and the forms of its pages (`POST /oauth/login`, `POST /oauth/consent`).
//!
//! The forms carry the validated request back as a hidden field and are validated again with
//! the same function: nothing is stored for a page a user abandons. Their CSRF tokens bind to
//! a `SameSite=Strict` cookie (login) or to the session (consent); a POST whose `Origin` is
//! another site's, or that the browser marks `Sec-Fetch-Site: cross-site`, is refused.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use plumbing::http::read_body;

use crate::AppState;
use crate::grants::GrantError;
use crate::model::Client;
use crate::pages::{ConsentPage, ErrorPage, HiddenField, LoginPage, PageBase, ScopeLine, page_response};
use crate::signin::request::{
    AuthorizationRequest, AuthorizeError, AuthorizeParams, MAX_REQUEST_BYTES, validate,
};
use crate::signin::{Decision, FormPurpose, SignInError, SignedIn};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth/authorize", get(authorize_get).post(authorize_post))
        .route("/oauth/login", post(login))
        .route("/oauth/consent", post(consent))
}

const EXPIRED_FORM: &str =
    "This form has expired or did not come from this site. Go back to the application and start again.";

async fn authorize_get(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    if query.len() > MAX_REQUEST_BYTES {
        return error_page(&state, StatusCode::PAYLOAD_TOO_LARGE, "Request too large", "The request is too large.");
    }
    let params = AuthorizeParams::parse(query.as_bytes());
    run(&state, &headers, &params).await.unwrap_or_else(|e| server_error(&state, e))
}

/// OIDC Core §3.1.2.1 allows the request as a form POST. `SameSite=Lax` cookies are not sent
/// on a cross-site POST, so it answers 303 to the same request as a GET, which they are.
async fn authorize_post(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let Ok(body) = read_body(&headers, body, MAX_REQUEST_BYTES).await else {
        return error_page(&state, StatusCode::PAYLOAD_TOO_LARGE, "Request too large", "The request is too large.");
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(&body) {
        query.append_pair(&name, &value);
    }
    see_other(&format!("{}/oauth/authorize?{}", path(&state), query.finish()))
}

/// `POST /oauth/login`: the login form.
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(body) = read_body(&headers, body, MAX_REQUEST_BYTES).await else {
        return error_page(&state, StatusCode::PAYLOAD_TOO_LARGE, "Request too large", "The request is too large.");
    };
    let form = Form::parse(&body);
    let signin = &state.signin;
    let csrf_cookie = cookie(&headers, &signin.cookies.csrf);
    let csrf_ok = is_same_origin(&state, &headers)
        && csrf_cookie.is_some_and(|c| {
            signin.verify_csrf(FormPurpose::Login, c, form.get("request"), form.get("csrf_token"))
        });
    if !csrf_ok {
        return error_page(&state, StatusCode::FORBIDDEN, "Start again", EXPIRED_FORM);
    }
    let params = AuthorizeParams::parse(form.get("request").as_bytes());
    let result = async {
        let (client, request) = match validated(&state, &params).await? {
            Ok(valid) => valid,
            Err(response) => return Ok(response),
        };
        let email = form.get("email");
        let login = state.tokens.login(email, form.get("password"), Some(peer.ip())).await;
        let user = match login {
            Ok(user) => user,
            Err(GrantError::InvalidGrant(_)) | Err(GrantError::MissingParameter(_)) => {
                metrics::counter!("oauth_logins_total", "result" => "failure").increment(1);
                let csrf = csrf_cookie.unwrap_or_default();
                return Ok(login_page(&state, &client, &request, csrf, Some(email), StatusCode::OK, Some("Wrong e-mail or password.")));
            }
            Err(GrantError::LoginThrottled { retry_after }) => {
                metrics::counter!("oauth_logins_total", "result" => "throttled").increment(1);
                return Ok(with_retry_after(
                    error_page(&state, StatusCode::TOO_MANY_REQUESTS, "Too many attempts", "Too many failed sign-in attempts. Wait a little, then try again."),
                    retry_after,
                ));
            }
            Err(GrantError::Busy { retry_after }) => {
                metrics::counter!("oauth_logins_total", "result" => "busy").increment(1);
                return Ok(with_retry_after(
                    error_page(&state, StatusCode::SERVICE_UNAVAILABLE, "Busy", "The server is busy. Try again in a moment."),
                    retry_after,
                ));
            }
            Err(other) => {
                tracing::error!(error = %other, "login failed");
                return Ok(error_page(&state, StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Signing in failed on our side. Try again later."));
            }
        };
        metrics::counter!("oauth_logins_total", "result" => "success").increment(1);
        let previous = cookie(&headers, &signin.cookies.session);
        let signed_in = signin.start_session(user, previous).await?;
        let decision = signin.decide(&request, &client, Some(&signed_in), true).await?;
        let mut response = respond(&state, &client, &request, &headers, Some(&signed_in), decision).await?;
        set_cookie(&mut response, &signin.cookies.set_session(&signed_in.id, signin.session_ttl()));
        Ok::<_, SignInError>(response)
    };
    result.await.unwrap_or_else(|e| server_error(&state, e))
}

/// `POST /oauth/consent`: Allow or Deny.
async fn consent(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let Ok(body) = read_body(&headers, body, MAX_REQUEST_BYTES).await else {
        return error_page(&state, StatusCode::PAYLOAD_TOO_LARGE, "Request too large", "The request is too large.");
    };
    let form = Form::parse(&body);
    let signin = &state.signin;
    let result = async {
        let signed_in = signin.session(cookie(&headers, &signin.cookies.session)).await?;
        let Some(signed_in) = signed_in.filter(|s| {
            is_same_origin(&state, &headers)
                && signin.verify_csrf(FormPurpose::Consent, &s.id, form.get("request"), form.get("csrf_token"))
        }) else {
            return Ok(error_page(&state, StatusCode::FORBIDDEN, "Start again", EXPIRED_FORM));
        };
        let params = AuthorizeParams::parse(form.get("request").as_bytes());
        let (client, request) = match validated(&state, &params).await? {
            Ok(valid) => valid,
            Err(response) => return Ok(response),
        };
        match form.get("decision") {
            "allow" => Ok(see_other(&signin.allow(&request, &client, &signed_in).await?)),
            "deny" => Ok(see_other(&signin.error_location(&crate::signin::request::Redirect {
                redirect_uri: request.redirect_uri.clone(),
                state: request.state.clone(),
                error: "access_denied",
                description: "the user denied the request",
            }))),
            _ => Ok(error_page(&state, StatusCode::BAD_REQUEST, "Start again", EXPIRED_FORM)),
        }
    };
    result.await.unwrap_or_else(|e: SignInError| server_error(&state, e))
}

/// The authorization endpoint proper: validate, look at the session, then the login page, the
/// consent page or the redirect.
async fn run(
    state: &AppState,
    headers: &HeaderMap,
    params: &AuthorizeParams,
) -> Result<Response, SignInError> {
    let (client, request) = match validated(state, params).await? {
        Ok(valid) => valid,
        Err(response) => return Ok(response),
    };
    let signin = &state.signin;
    let signed_in = signin.session(cookie(headers, &signin.cookies.session)).await?;
    let decision = signin.decide(&request, &client, signed_in.as_ref(), false).await?;
    respond(state, &client, &request, headers, signed_in.as_ref(), decision).await
}

/// The client and the validated request, or the response to an invalid one (a page before the
/// redirect URI is trusted, a redirect after).
async fn validated(
    state: &AppState,
    params: &AuthorizeParams,
) -> Result<Result<(Client, AuthorizationRequest), Response>, SignInError> {
    let client = state.signin.client(params.client_id()).await?;
    match validate(params, client.as_ref()) {
        Ok(request) => Ok(Ok((client.expect("validate refuses a missing client"), request))),
        Err(AuthorizeError::Page(message)) => {
            metrics::counter!("oauth_authorizations_total", "result" => "invalid_client_or_redirect_uri").increment(1);
            Ok(Err(error_page(state, StatusCode::BAD_REQUEST, "This sign-in link is not valid", message)))
        }
        Err(AuthorizeError::Redirect(redirect)) => Ok(Err(see_other(&state.signin.error_location(&redirect)))),
    }
}

async fn respond(
    state: &AppState,
    client: &Client,
    request: &AuthorizationRequest,
    headers: &HeaderMap,
    signed_in: Option<&SignedIn>,
    decision: Result<Decision, AuthorizeError>,
) -> Result<Response, SignInError> {
    match decision {
        Err(AuthorizeError::Redirect(redirect)) => Ok(see_other(&state.signin.error_location(&redirect))),
        Err(AuthorizeError::Page(message)) => Ok(error_page(state, StatusCode::BAD_REQUEST, "This sign-in link is not valid", message)),
        Ok(Decision::Redirect(location)) => Ok(see_other(&location)),
        Ok(Decision::Login) => {
            metrics::counter!("oauth_authorizations_total", "result" => "login_page").increment(1);
            let existing = cookie(headers, &state.signin.cookies.csrf).filter(|c| c.len() == 43);
            let (csrf, fresh) = match existing {
                Some(value) => (value.to_owned(), false),
                None => (state.signin.new_csrf_cookie()?, true),
            };
            let mut response = login_page(state, client, request, &csrf, request.login_hint.as_deref(), StatusCode::OK, None);
            if fresh {
                set_cookie(&mut response, &state.signin.cookies.set_csrf(&csrf));
            }
            Ok(response)
        }
        Ok(Decision::Consent { user, scopes }) => {
            metrics::counter!("oauth_authorizations_total", "result" => "consent_page").increment(1);
            let session_id = signed_in.map(|s| s.id.as_str()).unwrap_or_default();
            let descriptions = state.store.list_scopes().await?;
            // Identity scopes first, in the order of OIDC Core §5.4.
            let mut lines: Vec<ScopeLine> = crate::signin::IDENTITY_SCOPES
                .iter()
                .filter(|(name, _)| scopes.contains(*name))
                .map(|(name, description)| ScopeLine { name: (*name).to_owned(), description: (*description).to_owned() })
                .collect();
            lines.extend(scopes.iter().filter(|s| !crate::signin::is_identity_scope(s)).map(|name| ScopeLine {
                name: name.clone(),
                description: descriptions
                    .iter()
                    .find(|d| &d.name == name)
                    .map(|d| d.description.clone())
                    .filter(|d| !d.trim().is_empty())
                    .unwrap_or_else(|| name.clone()),
            }));
            let page = ConsentPage {
                base: base(state),
                client_name: client.name.clone(),
                user_email: user.email.clone(),
                scopes: lines,
                action: format!("{}/oauth/consent", path(state)),
                hidden: vec![
                    hidden("request", &request.encoded),
                    hidden("csrf_token", &state.signin.csrf_token(FormPurpose::Consent, session_id, &request.encoded)),
                ],
            };
            Ok(render(state, StatusCode::OK, state.pages.consent(&page)))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn login_page(
    state: &AppState,
    client: &Client,
    request: &AuthorizationRequest,
    csrf_cookie: &str,
    email: Option<&str>,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let page = LoginPage {
        base: base(state),
        client_name: client.name.clone(),
        login_hint: email.map(str::to_owned),
        error: error.map(str::to_owned),
        action: format!("{}/oauth/login", path(state)),
        hidden: vec![
            hidden("request", &request.encoded),
            hidden("csrf_token", &state.signin.csrf_token(FormPurpose::Login, csrf_cookie, &request.encoded)),
        ],
    };
    render(state, status, state.pages.login(&page))
}

/// The issuer's path (`""` at the root): every page URL is under it.
pub(super) fn path(state: &AppState) -> &str {
    crate::issuer::issuer_path(&state.issuer)
}

pub(super) fn base(state: &AppState) -> PageBase {
    PageBase { stylesheet: format!("{}/oauth/assets/style.css", path(state)) }
}

pub(super) fn hidden(name: &str, value: &str) -> HiddenField {
    HiddenField { name: name.to_owned(), value: value.to_owned() }
}

pub(super) fn render(state: &AppState, status: StatusCode, html: Result<String, crate::pages::PagesError>) -> Response {
    match html {
        Ok(html) => page_response(status, html),
        Err(err) => {
            tracing::error!(error = %err, "rendering a page failed");
            let _ = state;
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed").into_response()
        }
    }
}

pub(super) fn error_page(state: &AppState, status: StatusCode, title: &str, message: &str) -> Response {
    let page = ErrorPage { base: base(state), title: title.to_owned(), message: message.to_owned() };
    render(state, status, state.pages.error(&page))
}

pub(super) fn server_error(state: &AppState, err: SignInError) -> Response {
    tracing::error!(error = %err, "sign-in request failed");
    let mut response = error_page(state, StatusCode::SERVICE_UNAVAILABLE, "Something went wrong", "The server could not complete this request. Try again in a moment.");
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

pub(super) fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, location), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        )
            .into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

pub(super) fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The value of cookie `name`, if the request carries it.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether a form POST comes from our own pages: no foreign `Origin` and not marked
/// cross-site by the browser (Fetch Metadata).
pub(super) fn is_same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let ours = issuer_origin(&state.issuer);
    let origin_ok = match origin {
        None => true,
        Some(origin) => origin == ours,
    };
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    origin_ok && fetch_site != Some("cross-site")
}

/// `scheme://host[:port]` of the issuer.
fn issuer_origin(issuer: &str) -> &str {
    let path = crate::issuer::issuer_path(issuer);
    &issuer[..issuer.len() - path.len()]
}

/// A form body: the first value of each field (empty when absent).
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    pub(super) fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    pub(super) fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }
}
