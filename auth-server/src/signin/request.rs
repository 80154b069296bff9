//! The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1) and its validation, in the
//! order RFC 6749 §4.1.2.1 requires: until the client and its redirect URI are trusted every
//! error is a page for the user ([`AuthorizeError::Page`]), never a redirect; after that every
//! error goes back to the client ([`AuthorizeError::Redirect`]) with `state` and `iss`.
//!
//! Parsing is strict: a repeated parameter is `invalid_request` (RFC 6749 §3.1), values over
//! their caps or holding control characters are malformed, and unknown parameters are ignored
//! and never kept.

use std::collections::BTreeSet;

use super::pkce;
use super::redirect_uri::{MAX_REDIRECT_URI_LEN, is_registered};
use crate::model::{Client, GrantType};

/// The parameters of an authorization request this server reads, with their caps in bytes.
const PARAMS: [(&str, usize); 18] = [
    ("response_type", 64),
    ("client_id", 255),
    ("redirect_uri", MAX_REDIRECT_URI_LEN),
    ("scope", 2048),
    ("state", 2048),
    ("nonce", 512),
    ("code_challenge", 128),
    ("code_challenge_method", 16),
    ("prompt", 64),
    ("max_age", 10),
    ("login_hint", 320),
    ("id_token_hint", 8 * 1024),
    ("response_mode", 32),
    ("request", 1),
    ("request_uri", 1),
    ("registration", 1),
    ("display", 16),
    ("ui_locales", 64),
];

/// Longest query string or form body accepted at the authorization endpoint.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The parsed parameters: known names only, each at most once.
#[derive(Debug, Default, Clone)]
pub struct AuthorizeParams {
    values: Vec<(&'static str, Result<String, ()>)>,
    /// Known parameters sent more than once.
    repeated_known: Vec<&'static str>,
    /// Whether an unknown parameter was sent more than once.
    repeated_unknown: bool,
}

impl AuthorizeParams {
    /// Parses `application/x-www-form-urlencoded` text (a query string or a form body).
    pub fn parse(encoded: &[u8]) -> AuthorizeParams {
        let mut params = AuthorizeParams::default();
        let mut unknown: std::collections::HashSet<String> = Default::default();
        for (name, value) in form_urlencoded::parse(encoded) {
            // RFC 6749 §3.1: parameters sent without a value are treated as omitted.
            if value.is_empty() {
                continue;
            }
            let Some(&(name, cap)) = PARAMS.iter().find(|(known, _)| *known == name) else {
                if !unknown.insert(name.into_owned()) {
                    params.repeated_unknown = true;
                }
                continue;
            };
            if params.values.iter().any(|(known, _)| *known == name) {
                params.repeated_known.push(name);
                continue;
            }
            // `form_urlencoded` replaces invalid UTF-8 with U+FFFD: refuse it as malformed.
            let ok =
                value.len() <= cap && !value.chars().any(|c| c.is_control() || c == '\u{FFFD}');
            params
                .values
                .push((name, if ok { Ok(value.into_owned()) } else { Err(()) }));
        }
        params
    }

    /// The `client_id`, when present and well-formed.
    pub fn client_id(&self) -> Option<&str> {
        self.get("client_id").ok().flatten()
    }

    /// The value of `name`: `Ok(None)` when absent, `Err(())` when malformed.
    fn get(&self, name: &str) -> Result<Option<&str>, ()> {
        match self.values.iter().find(|(known, _)| *known == name) {
            None => Ok(None),
            Some((_, Ok(value))) => Ok(Some(value.as_str())),
            Some((_, Err(()))) => Err(()),
        }
    }

    /// The known, well-formed parameters, form-encoded again: what the login and consent forms
    /// carry back (nothing unknown is echoed).
    pub fn encode(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.values {
            if let Ok(value) = value {
                out.append_pair(name, value);
            }
        }
        out.finish()
    }
}

/// What the `prompt` parameter asks for (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A validated authorization request from a trusted client to a registered redirect URI.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client_id: String,
    /// As sent, byte for byte (the token request must repeat it).
    pub redirect_uri: String,
    /// The scopes asked for (all within the client's), or `None` when `scope` was absent.
    pub scope: Option<BTreeSet<String>>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Prompt,
    /// Seconds (OIDC Core §3.1.2.1).
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub id_token_hint: Option<String>,
    /// The known parameters, form-encoded (the forms' hidden `request` field).
    pub encoded: String,
}

/// Why an authorization request cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Shown to the user as a 400 page: the client or redirect URI cannot be trusted.
    Page(&'static str),
    /// Sent back to the client (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6).
    Redirect(Redirect),
}

/// An error response to send to the client's redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub redirect_uri: String,
    pub state: Option<String>,
    /// The error code.
    pub error: &'static str,
    /// A fixed text: it never quotes the request.
    pub description: &'static str,
}

impl AuthorizeError {
    /// An error to redirect with, for `request`.
    pub fn redirect(
        request: &AuthorizationRequest,
        error: &'static str,
        description: &'static str,
    ) -> AuthorizeError {
        AuthorizeError::Redirect(Redirect {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            error,
            description,
        })
    }
}

/// Validates `params` for `client` (looked up by the caller from `client_id`; `None` when
/// unknown). See the module documentation for the order.
pub fn validate(
    params: &AuthorizeParams,
    client: Option<&Client>,
) -> Result<AuthorizationRequest, AuthorizeError> {
    use AuthorizeError::Page;
    // Before the redirect URI is trusted: pages.
    let client_id = params.get("client_id").map_err(|_| Page(UNKNOWN_CLIENT))?;
    if client_id.is_none() {
        return Err(Page(
            "The request names no application (client_id is missing).",
        ));
    }
    if params
        .repeated_known
        .iter()
        .any(|name| matches!(*name, "client_id" | "redirect_uri"))
    {
        return Err(Page(REPEATED));
    }
    let client = client
        .filter(|c| !c.disabled && c.grant_types.contains(&GrantType::AuthorizationCode))
        .ok_or(Page(UNKNOWN_CLIENT))?;
    let redirect_uri = params
        .get("redirect_uri")
        .map_err(|_| Page(BAD_REDIRECT))?
        .ok_or(Page("The request names no redirect_uri."))?;
    if !is_registered(&client.redirect_uris, redirect_uri) {
        return Err(Page(BAD_REDIRECT));
    }
    // The state is returned even on errors; a malformed or repeated one is not.
    let state = params
        .get("state")
        .ok()
        .flatten()
        .filter(|_| !params.repeated_known.contains(&"state"))
        .map(str::to_owned);
    let fail = |error: &'static str, description: &'static str| {
        AuthorizeError::Redirect(Redirect {
            redirect_uri: redirect_uri.to_owned(),
            state: state.clone(),
            error,
            description,
        })
    };
    if params.repeated_unknown || !params.repeated_known.is_empty() {
        return Err(fail("invalid_request", "a parameter is repeated"));
    }
    if params.get("state").is_err() {
        return Err(fail("invalid_request", "state is malformed"));
    }
    match params.get("response_type") {
        Ok(Some("code")) => {}
        Ok(Some(_)) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        _ => {
            return Err(fail(
                "invalid_request",
                "response_type is missing or malformed",
            ));
        }
    }
    match params.get("response_mode") {
        Ok(None | Some("query")) => {}
        _ => {
            return Err(fail(
                "invalid_request",
                "only response_mode=query is supported",
            ));
        }
    }
    if params.get("request").map_or(true, |v| v.is_some()) {
        return Err(fail(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if params.get("request_uri").map_or(true, |v| v.is_some()) {
        return Err(fail(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    if params.get("registration").map_or(true, |v| v.is_some()) {
        return Err(fail(
            "registration_not_supported",
            "registration is not supported",
        ));
    }
    let code_challenge = match params.get("code_challenge") {
        Ok(Some(challenge)) if pkce::is_s256_challenge(challenge) => challenge.to_owned(),
        Ok(None) => {
            return Err(fail(
                "invalid_request",
                "code_challenge is required (PKCE, S256)",
            ));
        }
        _ => return Err(fail("invalid_request", "code_challenge is malformed")),
    };
    match params.get("code_challenge_method") {
        Ok(Some(pkce::S256)) => {}
        _ => {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
    }
    let scope = match params.get("scope") {
        Ok(None) => None,
        Ok(Some(scope)) => {
            let asked: BTreeSet<String> = scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if asked.is_empty()
                || scope
                    .split(' ')
                    .any(|s| !s.is_empty() && !is_scope_token(s))
            {
                return Err(fail("invalid_scope", "scope is malformed"));
            }
            if !asked.is_subset(&client.scopes) {
                return Err(fail(
                    "invalid_scope",
                    "the requested scope exceeds what the application may ask for",
                ));
            }
            Some(asked)
        }
        Err(()) => return Err(fail("invalid_scope", "scope is malformed")),
    };
    let nonce = params
        .get("nonce")
        .map_err(|_| fail("invalid_request", "nonce is malformed"))?
        .map(str::to_owned);
    let mut prompt = Prompt::default();
    let prompt_value = params
        .get("prompt")
        .map_err(|_| fail("invalid_request", "prompt is malformed"))?;
    for value in prompt_value
        .unwrap_or_default()
        .split(' ')
        .filter(|v| !v.is_empty())
    {
        match value {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            // OIDC Core §3.1.2.1: select_account is a hint we can honour by doing nothing.
            "select_account" => {}
            _ => return Err(fail("invalid_request", "prompt has an unsupported value")),
        }
    }
    if prompt.none && (prompt.login || prompt.consent) {
        return Err(fail(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        ));
    }
    let max_age = match params.get("max_age") {
        Ok(None) => None,
        Ok(Some(value)) => Some(
            value
                .parse::<u32>()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .map(i64::from)
                .ok_or_else(|| fail("invalid_request", "max_age must be a number of seconds"))?,
        ),
        Err(()) => {
            return Err(fail(
                "invalid_request",
                "max_age must be a number of seconds",
            ));
        }
    };
    let login_hint = params
        .get("login_hint")
        .map_err(|_| fail("invalid_request", "login_hint is malformed"))?
        .map(str::to_owned);
    let id_token_hint = params
        .get("id_token_hint")
        .map_err(|_| fail("invalid_request", "id_token_hint is malformed"))?
        .map(str::to_owned);
    for name in ["display", "ui_locales"] {
        if params.get(name).is_err() {
            return Err(fail("invalid_request", "a parameter is malformed"));
        }
    }
    Ok(AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope,
        state,
        nonce,
        code_challenge,
        prompt,
        max_age,
        login_hint,
        id_token_hint,
        encoded: params.encode(),
    })
}

const UNKNOWN_CLIENT: &str = "The application that sent you here is not registered with this server, or is not allowed to sign people in.";
const BAD_REDIRECT: &str =
    "The application asked to send you back to an address that is not registered for it.";
const REPEATED: &str = "The request repeats a parameter.";

/// RFC 6749 §3.3 `scope-token`: `%x21 / %x23-5B / %x5D-7E`.
fn is_scope_token(token: &str) -> bool {
    token
        .bytes()
        .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// `redirect_uri` with the response parameters appended (`?` or `&`, RFC 6749 §3.1.2: a
/// registered query is kept), form-encoded.
pub fn append_query(redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{separator}{}", query.finish())
}
