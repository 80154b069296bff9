//! The demo web app: a small OpenID Connect relying party that the one-process stack serves on
//! transcription-api's listener under `/demo/`, so that a person can sign in through the auth
//! server's login and consent pages from a browser (README, "Walkthrough").
//!
//! [`START_PATH`] begins an authorization code request with PKCE S256 (RFC 7636), a `state`
//! and a `nonce`; the `code_verifier` and the nonce wait in memory under the state for
//! [`PENDING_TTL`]. [`CALLBACK_PATH`] checks `state` and `iss` (RFC 9207 §2.4), exchanges the
//! code (RFC 6749 §4.1.3, as the confidential client registered by [`crate::demo`]), checks the
//! id_token's `nonce` (OIDC Core §3.1.3.7 item 11), calls the userinfo endpoint (OIDC Core §5.3)
//! and shows who signed in. The id_token comes straight from the token endpoint, so its
//! signature is not checked here (OIDC Core §3.1.3.7 item 6 allows that over TLS; this is a
//! loopback demo, not a model for production clients). The pages are sent with the auth
//! server's page headers (no script, nothing loaded from elsewhere, every value escaped).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auth_server::pages::page_response;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

/// The app's home page, where the end-session endpoint sends the browser after logout.
pub const HOME_PATH: &str = "/demo/";
/// Opens a sign-in: answers 303 to the authorization endpoint.
pub const START_PATH: &str = "/demo/start";
/// The redirect URI's path: the authorization response arrives here.
pub const CALLBACK_PATH: &str = "/demo/callback";
/// How long a started sign-in may take to come back to [`CALLBACK_PATH`].
pub const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// At most this many sign-ins wait for their callback; more are refused with 503.
pub const MAX_PENDING: usize = 1024;
/// What the app asks for: who the person is, and the product's permissions.
pub const SCOPE: &str = "openid profile email transcriptions:read transcriptions:write";
/// The longest a call to the auth server may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The redirect URI of the app served at `base_url` (e.g. `http://127.0.0.1:8081`).
pub fn redirect_uri(base_url: &str) -> String {
    format!("{base_url}{CALLBACK_PATH}")
}

/// The post-logout redirect URI of the app served at `base_url`: its home page.
pub fn home_url(base_url: &str) -> String {
    format!("{base_url}{HOME_PATH}")
}

/// Where the app runs and how it authenticates to the auth server.
pub struct WebAppConfig {
    /// The auth server's `issuer`; its endpoints are `{issuer}/oauth/…`.
    pub issuer: String,
    /// The app's own origin (`http://host:port`); its redirect URI is [`redirect_uri`].
    pub base_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

/// The demo relying party; [`DemoWebApp::router`] serves it.
#[derive(Clone)]
pub struct DemoWebApp {
    inner: Arc<Inner>,
}

struct Inner {
    config: WebAppConfig,
    http: reqwest::Client,
    random: SystemRandom,
    /// Started sign-ins by `state`.
    pending: Mutex<HashMap<String, Pending>>,
}

/// What a started sign-in needs at its callback.
struct Pending {
    code_verifier: SecretString,
    nonce: String,
    started: Instant,
}

impl DemoWebApp {
    /// The app with its HTTP client (no redirects followed, [`CALL_TIMEOUT`] per call).
    pub fn new(config: WebAppConfig) -> Result<DemoWebApp, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CALL_TIMEOUT)
            .build()?;
        Ok(DemoWebApp {
            inner: Arc::new(Inner {
                config,
                http,
                random: SystemRandom::new(),
                pending: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// `GET` [`HOME_PATH`], [`START_PATH`] and [`CALLBACK_PATH`].
    pub fn router(self) -> Router {
        Router::new()
            .route(HOME_PATH, get(home))
            .route(START_PATH, get(start))
            .route(CALLBACK_PATH, get(callback))
            .with_state(self)
    }

    /// 32 random bytes, base64url (43 characters: also a valid RFC 7636 §4.1 verifier).
    fn random_token(&self) -> Result<String, DemoPageError> {
        let mut bytes = [0u8; 32];
        self.inner
            .random
            .fill(&mut bytes)
            .map_err(|_| DemoPageError::Random)?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Keeps a started sign-in, after dropping the expired ones; refused when
    /// [`MAX_PENDING`] are waiting.
    fn remember(&self, state: String, pending: Pending) -> Result<(), DemoPageError> {
        let mut waiting = self
            .inner
            .pending
            .lock()
            .map_err(|_| DemoPageError::Poisoned)?;
        waiting.retain(|_, p| p.started.elapsed() < PENDING_TTL);
        if waiting.len() >= MAX_PENDING {
            return Err(DemoPageError::TooManyPending);
        }
        waiting.insert(state, pending);
        Ok(())
    }

    /// Takes the sign-in started with `state` (once), unless it has expired.
    fn take(&self, state: &str) -> Result<Option<Pending>, DemoPageError> {
        let mut waiting = self
            .inner
            .pending
            .lock()
            .map_err(|_| DemoPageError::Poisoned)?;
        Ok(waiting
            .remove(state)
            .filter(|p| p.started.elapsed() < PENDING_TTL))
    }
}

/// Why a demo page could not do its work: each becomes an HTML page with its status, and is
/// logged once there.
#[derive(Debug, thiserror::Error)]
enum DemoPageError {
    #[error("the system's random generator failed")]
    Random,
    #[error("the list of started sign-ins is unusable")]
    Poisoned,
    #[error("too many sign-ins are in progress")]
    TooManyPending,
    #[error("the authorization URL is not a valid Location header")]
    BadLocation,
    #[error("the callback's query is malformed: {0}")]
    Query(String),
    #[error("this sign-in is unknown, used or expired")]
    UnknownState,
    #[error("the response names issuer {0:?}, not this app's (RFC 9207)")]
    WrongIssuer(Option<String>),
    #[error("the auth server answered {error}")]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("the response carries no code")]
    NoCode,
    #[error("calling the auth server failed: {0}")]
    Call(String),
    #[error("the auth server answered {status} to the {what} request: {error}")]
    Endpoint {
        what: &'static str,
        status: u16,
        error: String,
    },
    #[error("the id_token is malformed or its nonce is not this sign-in's")]
    IdToken,
}

impl IntoResponse for DemoPageError {
    fn into_response(self) -> Response {
        let status = match &self {
            DemoPageError::Random | DemoPageError::Poisoned | DemoPageError::BadLocation => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            DemoPageError::TooManyPending => StatusCode::SERVICE_UNAVAILABLE,
            DemoPageError::Query(_)
            | DemoPageError::UnknownState
            | DemoPageError::WrongIssuer(_)
            | DemoPageError::Refused { .. }
            | DemoPageError::NoCode => StatusCode::BAD_REQUEST,
            DemoPageError::Call(_) | DemoPageError::Endpoint { .. } | DemoPageError::IdToken => {
                StatusCode::BAD_GATEWAY
            }
        };
        tracing::warn!(error = %self, status = status.as_u16(), "demo web app: sign-in failed");
        let detail = match &self {
            DemoPageError::Refused {
                description: Some(description),
                ..
            } => format!("{self}: {description}"),
            _ => self.to_string(),
        };
        let body = format!(
            "<p>Sign-in failed: {}.</p>\n<p><a href=\"{}\">Sign in again</a></p>",
            escape(&detail),
            START_PATH
        );
        page_response(status, page("Sign-in failed", &body))
    }
}

/// `GET /demo/`: a link to sign in.
async fn home() -> Response {
    let body = format!(
        "<p>A web app that signs people in with the auth server (authorization code + PKCE, \
         OpenID Connect).</p>\n<p><a href=\"{START_PATH}\">Sign in</a></p>"
    );
    page_response(StatusCode::OK, page("Demo web app", &body))
}

/// `GET /demo/start`: a fresh `state`, `nonce` and `code_verifier`, then 303 to the
/// authorization endpoint (RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1).
async fn start(State(app): State<DemoWebApp>) -> Result<Response, DemoPageError> {
    let state = app.random_token()?;
    let nonce = app.random_token()?;
    let code_verifier = app.random_token()?;
    let code_challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, code_verifier.as_bytes()));
    let config = &app.inner.config;
    let query = query_string(&[
        ("response_type", "code"),
        ("client_id", &config.client_id),
        ("redirect_uri", &redirect_uri(&config.base_url)),
        ("scope", SCOPE),
        ("state", &state),
        ("nonce", &nonce),
        ("code_challenge", &code_challenge),
        ("code_challenge_method", "S256"),
    ]);
    let location = format!("{}/oauth/authorize?{query}", config.issuer);
    app.remember(
        state,
        Pending {
            code_verifier: SecretString::from(code_verifier),
            nonce,
            started: Instant::now(),
        },
    )?;
    let location = HeaderValue::from_str(&location).map_err(|_| DemoPageError::BadLocation)?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
    )
        .into_response())
}

/// The authorization response (RFC 6749 §4.1.2, §4.1.2.1; RFC 9207).
#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /demo/callback`: checks `state` (a sign-in this app started, once, within
/// [`PENDING_TTL`]) and `iss`, exchanges the code with the verifier, checks the id_token's
/// nonce, reads userinfo and shows "Signed in as …".
async fn callback(
    State(app): State<DemoWebApp>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Result<Response, DemoPageError> {
    let Query(query) = query.map_err(|e| DemoPageError::Query(e.body_text()))?;
    let pending = match &query.state {
        Some(state) => app.take(state)?,
        None => None,
    }
    .ok_or(DemoPageError::UnknownState)?;
    let config = &app.inner.config;
    if query.iss.as_deref() != Some(config.issuer.as_str()) {
        return Err(DemoPageError::WrongIssuer(query.iss));
    }
    if let Some(error) = query.error {
        return Err(DemoPageError::Refused {
            error,
            description: query.error_description,
        });
    }
    let code = query.code.ok_or(DemoPageError::NoCode)?;

    let tokens = app.exchange(&code, &pending.code_verifier).await?;
    let access_token = tokens["access_token"].as_str().unwrap_or_default();
    let id_token = tokens["id_token"].as_str().unwrap_or_default();
    let claims = id_token_claims(id_token).ok_or(DemoPageError::IdToken)?;
    if claims["nonce"].as_str() != Some(pending.nonce.as_str()) {
        return Err(DemoPageError::IdToken);
    }
    let user = app.userinfo(access_token).await?;
    Ok(page_response(
        StatusCode::OK,
        signed_in_page(config, &user, &claims, id_token),
    ))
}

impl DemoWebApp {
    /// `POST /oauth/token` with `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636
    /// §4.5), authenticated with HTTP Basic (RFC 6749 §2.3.1).
    async fn exchange(&self, code: &str, verifier: &SecretString) -> Result<Value, DemoPageError> {
        let config = &self.inner.config;
        let redirect = redirect_uri(&config.base_url);
        let response = self
            .inner
            .http
            .post(format!("{}/oauth/token", config.issuer))
            .basic_auth(
                &config.client_id,
                Some(config.client_secret.expose_secret()),
            )
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect.as_str()),
                ("code_verifier", verifier.expose_secret()),
            ])
            .send()
            .await
            .map_err(|e| DemoPageError::Call(e.without_url().to_string()))?;
        json_answer("token", response).await
    }

    /// `GET /oauth/userinfo` with the access token (OIDC Core §5.3.1).
    async fn userinfo(&self, access_token: &str) -> Result<Value, DemoPageError> {
        let response = self
            .inner
            .http
            .get(format!("{}/oauth/userinfo", self.inner.config.issuer))
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| DemoPageError::Call(e.without_url().to_string()))?;
        json_answer("userinfo", response).await
    }
}

/// The JSON body of a 200; otherwise the endpoint's `error` code (RFC 6749 §5.2) or status.
async fn json_answer(
    what: &'static str,
    response: reqwest::Response,
) -> Result<Value, DemoPageError> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status != reqwest::StatusCode::OK {
        return Err(DemoPageError::Endpoint {
            what,
            status: status.as_u16(),
            error: body["error"].as_str().unwrap_or("no error code").to_owned(),
        });
    }
    Ok(body)
}

/// The claims (payload) of a compact JWS, unverified.
fn id_token_claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

/// "Signed in as NAME (EMAIL)", the id_token's claims, and links to sign out (the end-session
/// endpoint with the id_token as hint, back to [`HOME_PATH`]) and to sign in again.
fn signed_in_page(config: &WebAppConfig, user: &Value, claims: &Value, id_token: &str) -> String {
    let email = user["email"].as_str().unwrap_or("no e-mail");
    let who = match user["name"].as_str() {
        Some(name) => format!("{name} ({email})"),
        None => email.to_owned(),
    };
    let logout = format!(
        "{}/oauth/logout?{}",
        config.issuer,
        query_string(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", &home_url(&config.base_url)),
        ])
    );
    let claims = serde_json::to_string_pretty(claims).unwrap_or_default();
    let body = format!(
        "<p>Signed in as {who}.</p>\n<h2>The id_token's claims</h2>\n<pre>{claims}</pre>\n\
         <p><a href=\"{logout}\">Sign out</a> · <a href=\"{START_PATH}\">Sign in again</a></p>",
        who = escape(&who),
        claims = escape(&claims),
        logout = escape(&logout),
    );
    page("Signed in", &body)
}

/// A whole page around `body` (already escaped HTML).
fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title} · Demo web app</title>\n</head>\n<body>\n<h1>{title}</h1>\n{body}\n</body>\n</html>\n",
        title = escape(title),
    )
}

/// `text` as HTML text or a quoted attribute value.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// `application/x-www-form-urlencoded` of `pairs`, as a query string.
fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    query.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character that could end a text node or an attribute is escaped.
    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#x27;b&#x27;&lt;/script&gt;"
        );
    }

    /// The page names the user, shows the claims, and links to the end-session endpoint with
    /// the id_token and the home page, all escaped; no script, nothing from another origin
    /// but the auth server's logout link.
    #[test]
    fn the_signed_in_page_escapes_what_the_auth_server_says() {
        let config = WebAppConfig {
            issuer: "http://127.0.0.1:8080".to_owned(),
            base_url: "http://127.0.0.1:8081".to_owned(),
            client_id: "c".to_owned(),
            client_secret: SecretString::from("s"),
        };
        let user = serde_json::json!({"name": "<b>Ada</b>", "email": "ada@example.com"});
        let claims = serde_json::json!({"sub": "u\"1", "nonce": "n"});
        let html = signed_in_page(&config, &user, &claims, "h.p.s");
        assert!(
            html.contains("Signed in as &lt;b&gt;Ada&lt;/b&gt; (ada@example.com)."),
            "{html}"
        );
        assert!(
            html.contains(r#"&quot;sub&quot;: &quot;u\&quot;1&quot;"#),
            "{html}"
        );
        assert!(
            html.contains(
                "href=\"http://127.0.0.1:8080/oauth/logout?id_token_hint=h.p.s&amp;post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A8081%2Fdemo%2F\""
            ),
            "{html}"
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
    }

    /// Only a JWS whose payload is a JSON object gives claims.
    #[test]
    fn id_token_claims_read_the_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"nonce":"n"}"#);
        assert_eq!(
            id_token_claims(&format!("h.{payload}.s")).unwrap()["nonce"],
            "n"
        );
        for bad in [
            "",
            "h",
            "h.!!.s",
            &format!("h.{}.s", URL_SAFE_NO_PAD.encode(b"[1]")),
        ] {
            assert!(id_token_claims(bad).is_none(), "{bad}");
        }
    }
}
