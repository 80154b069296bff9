//! RP-Initiated Logout 1.0: `GET`/`POST /oauth/logout`, the `end_session_endpoint`.
//!
//! - A valid `id_token_hint` (ours; expired is fine) naming the signed-in user ends the
//!   session at once; otherwise, with a session, the user confirms on a page (§2: logout
//!   requests without a hint can be forged by any site).
//! - `post_logout_redirect_uri` must be registered for the client the hint (or `client_id`)
//!   names, exactly; an unregistered one is a 400 page, never a redirect (§3). After logout the
//!   browser goes there with `state`, or sees the "signed out" page.
//! - Tokens already issued stay valid: the client revokes them at `/oauth/revoke`.

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use plumbing::http::read_body;

use super::authorize::{
    Form, base, cookie, error_page, hidden, is_same_origin, path, render, see_other,
    server_error, set_cookie,
};
use crate::AppState;
use crate::pages::{LogoutPage, SignedOutPage};
use crate::signin::request::append_query;
use crate::signin::{FormPurpose, SignInError};

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth/logout", get(logout_get).post(logout_post))
}

/// The parameters of a logout request (RP-Initiated Logout §2), each at most once.
struct LogoutRequest {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    /// The known parameters, form-encoded (the confirmation form carries them).
    encoded: String,
}

impl LogoutRequest {
    fn parse(encoded: &[u8]) -> Result<LogoutRequest, &'static str> {
        const NAMES: [(&str, usize); 4] = [
            ("id_token_hint", 8 * 1024),
            ("client_id", 255),
            ("post_logout_redirect_uri", crate::signin::redirect_uri::MAX_REDIRECT_URI_LEN),
            ("state", 2048),
        ];
        let mut values: [Option<String>; 4] = Default::default();
        for (name, value) in form_urlencoded::parse(encoded) {
            let Some(i) = NAMES.iter().position(|(n, _)| *n == name) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            if values[i].is_some() {
                return Err("The request repeats a parameter.");
            }
            if value.len() > NAMES[i].1 || value.chars().any(|c| c.is_control() || c == '\u{FFFD}') {
                return Err("The request has a malformed parameter.");
            }
            values[i] = Some(value.into_owned());
        }
        let mut out = form_urlencoded::Serializer::new(String::new());
        for ((name, _), value) in NAMES.iter().zip(&values) {
            if let Some(value) = value {
                out.append_pair(name, value);
            }
        }
        let [id_token_hint, client_id, post_logout_redirect_uri, state] = values;
        Ok(LogoutRequest {
            id_token_hint,
            client_id,
            post_logout_redirect_uri,
            state,
            encoded: out.finish(),
        })
    }
}

async fn logout_get(State(state): State<AppState>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let query = query.unwrap_or_default();
    logout(&state, &headers, query.as_bytes(), None).await
}

/// A POST is the RP's form (same rules as GET) or our confirmation form (with `csrf_token`).
async fn logout_post(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let Ok(body) = read_body(&headers, body, 16 * 1024).await else {
        return error_page(&state, StatusCode::PAYLOAD_TOO_LARGE, "Request too large", "The request is too large.");
    };
    let form = Form::parse(&body);
    if !form.get("csrf_token").is_empty() {
        let request = form.get("request").to_owned();
        return logout(&state, &headers, request.as_bytes(), Some(form.get("csrf_token").to_owned())).await;
    }
    logout(&state, &headers, &body, None).await
}

async fn logout(state: &AppState, headers: &HeaderMap, encoded: &[u8], confirmation: Option<String>) -> Response {
    let result = async {
        let request = match LogoutRequest::parse(encoded) {
            Ok(request) => request,
            Err(message) => return Ok(error_page(state, StatusCode::BAD_REQUEST, "This sign-out link is not valid", message)),
        };
        let signin = &state.signin;
        let hint = request.id_token_hint.as_deref().and_then(|h| signin.id_token_hint(h));
        // A hint we cannot read (another issuer's, a retired key's) counts as none: the user
        // confirms.
        // The client: the hint's audience; a client_id sent too must agree.
        let client_id = match (&hint, &request.client_id) {
            (Some(hint), Some(id)) if &hint.aud != id => {
                return Ok(error_page(state, StatusCode::BAD_REQUEST, "This sign-out link is not valid", "The sign-out request names two different applications."));
            }
            (Some(hint), _) => Some(hint.aud.clone()),
            (None, id) => id.clone(),
        };
        let client = signin.client(client_id.as_deref()).await?;
        let destination = match &request.post_logout_redirect_uri {
            None => None,
            Some(uri) => {
                if !client.as_ref().is_some_and(|c| c.post_logout_redirect_uris.iter().any(|r| r == uri)) {
                    return Ok(error_page(state, StatusCode::BAD_REQUEST, "This sign-out link is not valid", "The application asked to send you to an address that is not registered for it."));
                }
                let mut pairs = Vec::new();
                if let Some(s) = &request.state {
                    pairs.push(("state", s.as_str()));
                }
                Some(if pairs.is_empty() { uri.clone() } else { append_query(uri, &pairs) })
            }
        };
        let signed_in = signin.session(cookie(headers, &signin.cookies.session)).await?;
        let confirmed = match (&signed_in, &confirmation) {
            (None, _) => true,
            (Some(s), Some(token)) => {
                if !(is_same_origin(state, headers) && signin.verify_csrf(FormPurpose::Logout, &s.id, &request.encoded, token)) {
                    return Ok(error_page(state, StatusCode::FORBIDDEN, "Start again", "This form has expired or did not come from this site."));
                }
                true
            }
            (Some(s), None) => hint.as_ref().is_some_and(|h| h.sub == s.user.id),
        };
        if !confirmed {
            let s = signed_in.as_ref().expect("checked above");
            let page = LogoutPage {
                base: base(state),
                client_name: client.as_ref().map(|c| c.name.clone()),
                action: format!("{}/oauth/logout", path(state)),
                hidden: vec![
                    hidden("request", &request.encoded),
                    hidden("csrf_token", &signin.csrf_token(FormPurpose::Logout, &s.id, &request.encoded)),
                ],
            };
            return Ok(render(state, StatusCode::OK, state.pages.logout(&page)));
        }
        if let Some(s) = &signed_in {
            signin.end_session(&s.id).await?;
            metrics::counter!("oauth_sessions_ended_total", "reason" => "logout").increment(1);
        }
        let mut response = match destination {
            Some(location) => see_other(&location),
            None => render(state, StatusCode::OK, state.pages.signed_out(&SignedOutPage { base: base(state) })),
        };
        set_cookie(&mut response, &signin.cookies.clear_session());
        Ok::<_, SignInError>(response)
    };
    result.await.unwrap_or_else(|e| server_error(state, e))
}
