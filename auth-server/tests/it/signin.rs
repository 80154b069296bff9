//! Sign-in for people, black-box through real HTTP with a cookie jar: the authorization code
//! flow with PKCE for a confidential and a public client, OpenID Connect (id_token, userinfo),
//! single sign-on, prompt/max_age, consent remembered and withdrawn, every error of the
//! authorization and token endpoints, code replay, CSRF, session lifetimes and logout — on
//! SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use auth_server::admin::NewClient;
use auth_server::clock::Clock;
use auth_server::model::IdTokenAlg;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::helpers::TestApp;

pub const EMAIL: &str = "ada@example.com";
pub const PASSWORD: &str = "correct horse battery";
pub const REDIRECT: &str = "https://app.example/callback";
const LOGOUT_REDIRECT: &str = "https://app.example/signed-out";

/// A browser: follows nothing by itself, keeps cookies, reads forms.
pub struct Browser {
    http: reqwest::Client,
    /// name → (value, the whole Set-Cookie line)
    pub cookies: Mutex<BTreeMap<String, (String, String)>>,
}

/// What came back.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.body))
    }

    /// The query parameters of the Location.
    pub fn redirect_params(&self) -> BTreeMap<String, String> {
        let location = self.location();
        let query = location.split_once('?').map_or("", |(_, q)| q);
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    /// Every `<input name=… value=…>` of the page's form (hidden fields included).
    pub fn inputs(&self) -> BTreeMap<String, String> {
        let mut fields = BTreeMap::new();
        for tag in self.body.split("<input").skip(1) {
            let tag = &tag[..tag.find('>').unwrap()];
            let attr = |name: &str| {
                let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
                let end = start + tag[start..].find('"')?;
                Some(unescape(&tag[start..end]))
            };
            if let Some(name) = attr("name") {
                fields.insert(name, attr("value").unwrap_or_default());
            }
        }
        fields
    }
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Mutex::new(BTreeMap::new()),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(name, (value, _))| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn absorb(&self, response: reqwest::Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        for line in headers.get_all(SET_COOKIE) {
            let line = line.to_str().unwrap().to_owned();
            let (pair, _) = line.split_once(';').unwrap_or((&line, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let mut cookies = self.cookies.lock().unwrap();
            if line.contains("Max-Age=0") {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_owned(), (value.to_owned(), line.clone()));
            }
        }
        Page {
            status,
            headers,
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        let response = self
            .http
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.absorb(response).await
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut request = self
            .http
            .post(url)
            .header("cookie", self.cookie_header())
            .form(form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        self.absorb(request.send().await.unwrap()).await
    }

    /// Submits the page's form with its hidden fields plus `extra`.
    pub async fn submit(
        &self,
        app: &TestApp,
        page: &Page,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut fields: Vec<(String, String)> = page
            .inputs()
            .into_iter()
            .filter(|(name, _)| name != "email" && name != "password")
            .collect();
        fields.extend(
            extra
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        let form: Vec<(&str, &str)> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.post(&app.url(path), &form, Some(&app.base)).await
    }
}

/// One authorization request's PKCE verifier, state and nonce.
pub struct Attempt {
    pub verifier: String,
    pub state: String,
    pub nonce: String,
}

impl Attempt {
    pub fn new() -> Attempt {
        Attempt {
            verifier: format!(
                "v{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
            state: format!("s-{}", uuid::Uuid::new_v4().simple()),
            nonce: format!("n-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest(&SHA256, self.verifier.as_bytes()))
    }

    /// The authorization URL with `extra` parameters.
    pub fn url(
        &self,
        app: &TestApp,
        client_id: &str,
        scope: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let challenge = self.challenge();
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", scope)
            .append_pair("state", &self.state)
            .append_pair("nonce", &self.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        for (name, value) in extra {
            query.append_pair(name, value);
        }
        app.url(&format!("/oauth/authorize?{}", query.finish()))
    }
}

/// A registered sign-in client: id and secret (None when public).
pub struct SignInClient {
    pub id: String,
    pub secret: Option<String>,
}

pub async fn sign_in_client(app: &TestApp, tweak: impl FnOnce(&mut NewClient)) -> SignInClient {
    app.admin
        .ensure_scopes(&[
            ("transcriptions:read", "Read your transcriptions"),
            ("transcriptions:write", "Submit recordings"),
        ])
        .await
        .unwrap();
    let mut new = NewClient::signing_in(
        "Web <App>",
        [
            "openid",
            "profile",
            "email",
            "transcriptions:read",
            "transcriptions:write",
        ],
        [REDIRECT.to_owned(), "http://127.0.0.1/native".to_owned()],
    );
    new.post_logout_redirect_uris = vec![LOGOUT_REDIRECT.to_owned()];
    tweak(&mut new);
    let registered = app.admin.register_client(new).await.unwrap();
    SignInClient {
        id: registered.client.id,
        secret: registered.secret.map(|s| s.expose_secret().to_owned()),
    }
}

pub async fn user(app: &TestApp) -> String {
    let id = app
        .create_user(EMAIL, PASSWORD, &["transcriptions:read"])
        .await;
    app.store
        .set_user_profile(&id, Some("Ada Lovelace"), true)
        .await
        .unwrap();
    id
}

/// Logs in on the page the authorization URL shows and returns what follows the login.
pub async fn log_in(app: &TestApp, browser: &Browser, url: &str) -> Page {
    let page = browser.get(url).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("name=\"password\""),
        "the login page: {}",
        page.body
    );
    browser
        .submit(
            app,
            &page,
            "/oauth/login",
            &[("email", EMAIL), ("password", PASSWORD)],
        )
        .await
}

/// The code of a redirect to the client, after checking `state` and `iss`.
pub fn code_of(app: &TestApp, page: &Page, attempt: &Attempt) -> String {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(page.location().starts_with(REDIRECT), "{}", page.location());
    let params = page.redirect_params();
    assert_eq!(params.get("state"), Some(&attempt.state), "{params:?}");
    assert_eq!(
        params.get("iss"),
        Some(&app.issuer),
        "RFC 9207 iss: {params:?}"
    );
    params
        .get("code")
        .unwrap_or_else(|| panic!("no code: {params:?}"))
        .clone()
}

pub async fn exchange(
    app: &TestApp,
    client: &SignInClient,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ];
    match &client.secret {
        Some(secret) => app.token(&form, Some((&client.id, secret))).await,
        None => {
            form.push(("client_id", &client.id));
            app.token(&form, None).await
        }
    }
}

fn claims(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let header =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let claims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    (header, claims)
}

/// The id_token's signature, checked with the published JWKS through jsonwebtoken.
async fn verify_with_jwks(app: &TestApp, jwt: &str, client_id: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the id_token's kid is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[client_id]);
    validation.set_issuer(&[&app.issuer]);
    jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .expect("the id_token verifies")
        .claims
}

async fn introspect_active(app: &TestApp, token: &str) -> bool {
    let (id, secret) = app.create_client(&["oauth:introspect"], &[]).await;
    let body: Value = app
        .post_form("/oauth/introspect", &[("token", token)], (&id, &secret))
        .await
        .json()
        .await
        .unwrap();
    body["active"].as_bool().unwrap()
}

/// The whole flow for a confidential third-party client: login page, consent page, code,
/// token exchange with an id_token, userinfo, refresh; then single sign-on with the consent
/// remembered.
async fn confidential_client_signs_a_user_in(app: &TestApp) {
    let client = sign_in_client(app, |_| {}).await;
    let user_id = user(app).await;
    let browser = Browser::new();
    let attempt = Attempt::new();
    let scope = "openid profile email transcriptions:read transcriptions:write";
    let consent = log_in(app, &browser, &attempt.url(app, &client.id, scope, &[])).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert!(
        consent.body.contains("Web &lt;App&gt;"),
        "the client's name, escaped: {}",
        consent.body
    );
    assert!(consent.body.contains("Read your transcriptions"));
    assert!(
        !consent.body.contains("Submit recordings"),
        "a permission the user lacks is not asked for"
    );
    let done = browser
        .submit(app, &consent, "/oauth/consent", &[("decision", "allow")])
        .await;
    let code = code_of(app, &done, &attempt);
    assert_eq!(code.len(), 43, "256 random bits, base64url");

    let response = exchange(app, &client, &code, &attempt.verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "email openid profile transcriptions:read");
    let id_token = tokens["id_token"]
        .as_str()
        .expect("an id_token with openid");
    let access_token = tokens["access_token"].as_str().unwrap();
    let (header, _) = claims(id_token);
    assert_eq!(
        (header["alg"].as_str(), header["typ"].as_str()),
        (Some("RS256"), Some("JWT"))
    );
    let id = verify_with_jwks(app, id_token, &client.id).await;
    assert_eq!(id["sub"], user_id.as_str());
    assert_eq!(id["azp"], client.id.as_str());
    assert_eq!(id["nonce"], attempt.nonce.as_str());
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    let expected_at_hash =
        URL_SAFE_NO_PAD.encode(&digest(&SHA256, access_token.as_bytes()).as_ref()[..16]);
    assert_eq!(id["at_hash"], expected_at_hash.as_str());
    let auth_time = id["auth_time"].as_i64().unwrap();
    assert_eq!(
        auth_time,
        app.clock.now().unix_timestamp(),
        "auth_time is the login's time"
    );
    let (access_header, access_claims) = claims(access_token);
    assert_eq!(access_header["alg"], "ES256", "access tokens stay ES256");
    assert_eq!(access_claims["sub"], user_id.as_str());

    let info: Value = app
        .http
        .get(app.url("/oauth/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info,
        serde_json::json!({"sub": user_id, "name": "Ada Lovelace", "email": EMAIL, "email_verified": true})
    );

    let refreshed = app
        .token(
            &[
                ("grant_type", "refresh_token"),
                // The identity scopes are refreshable like the permissions.
                ("scope", "openid email"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
            Some((&client.id, client.secret.as_deref().unwrap())),
        )
        .await;
    assert_eq!(
        refreshed.status(),
        StatusCode::OK,
        "refresh tokens of this grant rotate as today's"
    );

    // Single sign-on: the same browser, a new request, no form and no consent page.
    let again = Attempt::new();
    let page = browser.get(&again.url(app, &client.id, scope, &[])).await;
    let code = code_of(app, &page, &again);
    assert_eq!(
        exchange(app, &client, &code, &again.verifier)
            .await
            .status(),
        StatusCode::OK
    );

    // A wider scope than allowed asks again; prompt=consent asks again.
    let again = Attempt::new();
    let page = browser
        .get(&again.url(app, &client.id, scope, &[("prompt", "consent")]))
        .await;
    assert!(
        page.body.contains("name=\"decision\""),
        "prompt=consent shows the page: {}",
        page.body
    );
}

/// A public first-party client: no consent page, `client_id` alone at the token endpoint,
/// refresh with `client_id` alone; a secret is refused.
async fn public_client_signs_a_user_in(app: &TestApp) {
    user(app).await;
    let client = sign_in_client(app, |new| {
        new.public = true;
        new.first_party = true;
        new.id_token_alg = IdTokenAlg::ES256;
    })
    .await;
    assert!(client.secret.is_none());
    let browser = Browser::new();
    let attempt = Attempt::new();
    let done = log_in(app, &browser, &attempt.url(app, &client.id, "openid", &[])).await;
    let code = code_of(app, &done, &attempt);
    let with_secret = app
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &attempt.verifier),
            ],
            Some((&client.id, "guess")),
        )
        .await;
    assert_eq!(
        with_secret.status(),
        StatusCode::UNAUTHORIZED,
        "a public client has no secret"
    );
    // That attempt did not authenticate, so the code is still fresh.
    let response = exchange(app, &client, &code, &attempt.verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap()).0["alg"],
        "ES256",
        "the registered id_token alg"
    );
    verify_with_jwks(app, tokens["id_token"].as_str().unwrap(), &client.id).await;
    let refreshed = app
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                ("client_id", &client.id),
            ],
            None,
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    // Without the client_id a public client is nobody.
    let anonymous = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
            None,
        )
        .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// prompt=none without a session → login_required; with a session but no consent →
/// consent_required; Deny → access_denied; a withdrawn consent asks again.
async fn prompt_none_and_consent(app: &TestApp) {
    let user_id = user(app).await;
    let client = sign_in_client(app, |_| {}).await;
    let browser = Browser::new();
    let attempt = Attempt::new();
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[("prompt", "none")]))
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let params = page.redirect_params();
    assert_eq!(params["error"], "login_required");
    assert_eq!(
        (params["state"].as_str(), params["iss"].as_str()),
        (attempt.state.as_str(), app.issuer.as_str())
    );

    let consent = log_in(app, &browser, &attempt.url(app, &client.id, "openid", &[])).await;
    assert!(consent.body.contains("name=\"decision\""));
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[("prompt", "none")]))
        .await;
    assert_eq!(page.redirect_params()["error"], "consent_required");
    let denied = browser
        .submit(app, &consent, "/oauth/consent", &[("decision", "deny")])
        .await;
    let params = denied.redirect_params();
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], attempt.state);
    assert_eq!(params["iss"], app.issuer);
    assert!(
        app.store
            .find_consent(&user_id, &client.id)
            .await
            .unwrap()
            .is_none()
    );

    let allowed = browser
        .submit(app, &consent, "/oauth/consent", &[("decision", "allow")])
        .await;
    code_of(app, &allowed, &attempt);
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[("prompt", "none")]))
        .await;
    assert!(
        page.redirect_params().contains_key("code"),
        "the consent is remembered"
    );
    app.store
        .delete_consents(&user_id, Some(&client.id))
        .await
        .unwrap();
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[("prompt", "none")]))
        .await;
    assert_eq!(
        page.redirect_params()["error"],
        "consent_required",
        "withdrawn, it asks again"
    );
}

/// Every way a code exchange can be wrong is invalid_grant (RFC 6749 §5.2, RFC 7636 §4.6);
/// a replay revokes what the first exchange issued (RFC 6749 §4.1.2).
async fn code_exchange_errors_and_replay(app: &TestApp) {
    user(app).await;
    let client = sign_in_client(app, |new| new.first_party = true).await;
    let other = sign_in_client(app, |new| new.first_party = true).await;
    let browser = Browser::new();
    log_in(
        app,
        &browser,
        &Attempt::new().url(app, &client.id, "openid", &[]),
    )
    .await;
    let fresh_code = async |client: &SignInClient| {
        let attempt = Attempt::new();
        let page = browser
            .get(&attempt.url(app, &client.id, "openid transcriptions:read", &[]))
            .await;
        (code_of(app, &page, &attempt), attempt)
    };
    let secret = client.secret.clone().unwrap();
    /// A token request's fields from the code and the right verifier.
    type Fields = Box<dyn Fn(&str, &str) -> Vec<(String, String)>>;
    let cases: Vec<(&str, Fields)> = vec![
        (
            "wrong verifier",
            Box::new(|code, _| {
                vec![
                    ("code".into(), code.into()),
                    ("redirect_uri".into(), REDIRECT.into()),
                    ("code_verifier".into(), "w".repeat(43)),
                ]
            }),
        ),
        (
            "no verifier",
            Box::new(|code, _| {
                vec![
                    ("code".into(), code.into()),
                    ("redirect_uri".into(), REDIRECT.into()),
                ]
            }),
        ),
        (
            "plain: the challenge as verifier",
            Box::new(|code, v| {
                vec![
                    ("code".into(), code.into()),
                    ("redirect_uri".into(), REDIRECT.into()),
                    (
                        "code_verifier".into(),
                        URL_SAFE_NO_PAD.encode(digest(&SHA256, v.as_bytes())),
                    ),
                ]
            }),
        ),
        (
            "no redirect_uri",
            Box::new(|code, v| {
                vec![
                    ("code".into(), code.into()),
                    ("code_verifier".into(), v.into()),
                ]
            }),
        ),
        (
            "another redirect_uri",
            Box::new(|code, v| {
                vec![
                    ("code".into(), code.into()),
                    ("redirect_uri".into(), "http://127.0.0.1/native".into()),
                    ("code_verifier".into(), v.into()),
                ]
            }),
        ),
        (
            "a case variant of the redirect_uri",
            Box::new(|code, v| {
                vec![
                    ("code".into(), code.into()),
                    ("redirect_uri".into(), REDIRECT.replace("app", "APP")),
                    ("code_verifier".into(), v.into()),
                ]
            }),
        ),
        (
            "a port variant of the redirect_uri",
            Box::new(|code, v| {
                vec![
                    ("code".into(), code.into()),
                    (
                        "redirect_uri".into(),
                        REDIRECT.replace(".example/", ".example:443/"),
                    ),
                    ("code_verifier".into(), v.into()),
                ]
            }),
        ),
        (
            "an unknown code",
            Box::new(|_, v| {
                vec![
                    ("code".into(), "x".repeat(43)),
                    ("redirect_uri".into(), REDIRECT.into()),
                    ("code_verifier".into(), v.into()),
                ]
            }),
        ),
    ];
    for (case, form) in cases {
        let (code, attempt) = fresh_code(&client).await;
        let mut fields = form(&code, &attempt.verifier);
        fields.push(("grant_type".into(), "authorization_code".into()));
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let response = app.token(&fields, Some((&client.id, &secret))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant", "{case}: {body}");
        // A failed attempt with the code used it up (RFC 6749 §4.1.2: single use).
        if case != "an unknown code" {
            assert_eq!(
                exchange(app, &client, &code, &attempt.verifier)
                    .await
                    .status(),
                StatusCode::BAD_REQUEST,
                "{case}: spent"
            );
        }
    }
    // Another client's code.
    let (code, attempt) = fresh_code(&other).await;
    let response = exchange(app, &client, &code, &attempt.verifier).await;
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    // Expired: 60 s.
    let (code, attempt) = fresh_code(&client).await;
    app.clock.advance(Duration::from_secs(60));
    let response = exchange(app, &client, &code, &attempt.verifier).await;
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_grant",
        "a code lives 60 s"
    );

    // Replay: the second presentation fails and revokes the first one's tokens.
    let (code, attempt) = fresh_code(&client).await;
    let first: Value = exchange(app, &client, &code, &attempt.verifier)
        .await
        .json()
        .await
        .unwrap();
    let access = first["access_token"].as_str().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();
    assert!(introspect_active(app, access).await);
    let replay = exchange(app, &client, &code, &attempt.verifier).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        replay.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    assert!(
        !introspect_active(app, access).await,
        "the access token from the code is revoked"
    );
    assert!(
        !introspect_active(app, refresh).await,
        "and its refresh family"
    );
    let refreshed = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
            Some((&client.id, &secret)),
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::BAD_REQUEST);

    // An id_token is not an access token (typ JWT, not at+jwt).
    let (code, attempt) = fresh_code(&client).await;
    let tokens: Value = exchange(app, &client, &code, &attempt.verifier)
        .await
        .json()
        .await
        .unwrap();
    let userinfo = app
        .http
        .get(app.url("/oauth/userinfo"))
        .bearer_auth(tokens["id_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);
    assert!(
        userinfo.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

/// RFC 6749 §4.1.2.1: before the client and redirect URI are trusted, a page (400, never a
/// redirect); after, a redirect with the error, `state` and `iss`.
async fn authorization_errors(app: &TestApp) {
    user(app).await;
    let client = sign_in_client(app, |_| {}).await;
    let (machine, _) = app.create_client(&["transcriptions:read"], &[]).await;
    let browser = Browser::new();
    let attempt = Attempt::new();
    let base = |extra: &[(&str, &str)], drop: &[&str]| -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        let challenge = attempt.challenge();
        let defaults = [
            ("response_type", "code"),
            ("client_id", client.id.as_str()),
            ("redirect_uri", REDIRECT),
            ("state", attempt.state.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        for (name, value) in defaults {
            if !drop.contains(&name) && !extra.iter().any(|(n, _)| *n == name) {
                query.append_pair(name, value);
            }
        }
        for (name, value) in extra {
            query.append_pair(name, value);
        }
        app.url(&format!("/oauth/authorize?{}", query.finish()))
    };
    let pages: Vec<(&str, String)> = vec![
        ("no client_id", base(&[], &["client_id"])),
        ("unknown client_id", base(&[("client_id", "nobody")], &[])),
        ("a machine client", base(&[("client_id", &machine)], &[])),
        ("no redirect_uri", base(&[], &["redirect_uri"])),
        (
            "unregistered redirect_uri",
            base(&[("redirect_uri", "https://evil.example/cb")], &[]),
        ),
        (
            "redirect_uri with a trailing slash",
            base(&[("redirect_uri", "https://app.example/callback/")], &[]),
        ),
        (
            "repeated client_id",
            format!("{}&client_id={}", base(&[], &[]), client.id),
        ),
        (
            "control character in redirect_uri",
            base(
                &[("redirect_uri", "https://app.example/callback\u{0}")],
                &[],
            ),
        ),
    ];
    for (case, url) in pages {
        let page = browser.get(&url).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{case}");
        assert!(
            page.headers.get(LOCATION).is_none(),
            "{case}: never a redirect"
        );
        assert!(
            page.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{case}"
        );
        assert!(
            !page.headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("form-action")
        );
    }
    let redirects: Vec<(&str, String, &str, bool)> = vec![
        (
            "no response_type",
            base(&[], &["response_type"]),
            "invalid_request",
            true,
        ),
        (
            "response_type=token",
            base(&[("response_type", "token")], &[]),
            "unsupported_response_type",
            true,
        ),
        (
            "no code_challenge",
            base(&[], &["code_challenge"]),
            "invalid_request",
            true,
        ),
        (
            "method plain",
            base(&[("code_challenge_method", "plain")], &[]),
            "invalid_request",
            true,
        ),
        (
            "no method",
            base(&[], &["code_challenge_method"]),
            "invalid_request",
            true,
        ),
        (
            "a 3-character challenge",
            base(&[("code_challenge", "abc")], &[]),
            "invalid_request",
            true,
        ),
        (
            "scope beyond the client's",
            base(&[("scope", "openid admin")], &[]),
            "invalid_scope",
            true,
        ),
        (
            "request object",
            base(&[("request", "eyJ")], &[]),
            "request_not_supported",
            true,
        ),
        (
            "request_uri",
            base(&[("request_uri", "https://x")], &[]),
            "request_uri_not_supported",
            true,
        ),
        (
            "prompt none with login",
            base(&[("prompt", "none login")], &[]),
            "invalid_request",
            true,
        ),
        (
            "max_age not a number",
            base(&[("max_age", "-1")], &[]),
            "invalid_request",
            true,
        ),
        (
            "response_mode fragment",
            base(&[("response_mode", "fragment")], &[]),
            "invalid_request",
            true,
        ),
        (
            "repeated state",
            format!("{}&state=again", base(&[], &[])),
            "invalid_request",
            false,
        ),
        (
            "nonce with NUL",
            base(&[("nonce", "a\u{0}b")], &[]),
            "invalid_request",
            true,
        ),
        (
            "4 KB state",
            base(&[("state", &"s".repeat(4096))], &[]),
            "invalid_request",
            false,
        ),
    ];
    for (case, url, error, with_state) in redirects {
        let page = browser.get(&url).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{case}: {}", page.body);
        assert!(page.location().starts_with(REDIRECT), "{case}");
        let params = page.redirect_params();
        assert_eq!(
            params.get("error").map(String::as_str),
            Some(error),
            "{case}: {params:?}"
        );
        assert_eq!(
            params.get("iss"),
            Some(&app.issuer),
            "{case}: iss on errors too"
        );
        assert_eq!(
            params.get("state") == Some(&attempt.state),
            with_state,
            "{case}: {params:?}"
        );
    }
    // RFC 8252 §7.3: any port on a loopback IP literal registered without one.
    let page = browser
        .get(&base(
            &[("redirect_uri", "http://127.0.0.1:51234/native")],
            &[],
        ))
        .await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "the login page for a loopback redirect on any port"
    );
    // A query over the 16 KiB cap: a page, no 5xx.
    let page = browser
        .get(&base(&[("nonce", &"n".repeat(20 * 1024))], &[]))
        .await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// The login and consent forms refuse a missing CSRF cookie, a wrong token and a foreign
/// Origin; a wrong password shows the form again with the same answer as an unknown user.
async fn forms_refuse_forgeries(app: &TestApp) {
    user(app).await;
    let client = sign_in_client(app, |_| {}).await;
    let browser = Browser::new();
    let attempt = Attempt::new();
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[]))
        .await;
    let fields = page.inputs();
    let request = fields["request"].clone();
    let post = async |csrf: &str, origin: &str, jar: &Browser| {
        let form = [
            ("request", request.as_str()),
            ("csrf_token", csrf),
            ("email", EMAIL),
            ("password", PASSWORD),
        ];
        jar.post(&app.url("/oauth/login"), &form, Some(origin))
            .await
    };
    assert_eq!(
        post("forged", &app.base, &browser).await.status,
        StatusCode::FORBIDDEN,
        "wrong token"
    );
    assert_eq!(
        post(&fields["csrf_token"], "https://evil.example", &browser)
            .await
            .status,
        StatusCode::FORBIDDEN,
        "foreign Origin"
    );
    assert_eq!(
        post(&fields["csrf_token"], &app.base, &Browser::new())
            .await
            .status,
        StatusCode::FORBIDDEN,
        "no CSRF cookie"
    );
    let csrf_line = browser.cookies.lock().unwrap()["auth_csrf"].1.clone();
    assert!(
        csrf_line.contains("SameSite=Strict") && csrf_line.contains("HttpOnly"),
        "{csrf_line}"
    );

    let wrong = browser
        .submit(
            app,
            &page,
            "/oauth/login",
            &[("email", EMAIL), ("password", "wrong password!")],
        )
        .await;
    let unknown = browser
        .submit(
            app,
            &page,
            "/oauth/login",
            &[
                ("email", "nobody@example.com"),
                ("password", "wrong password!"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::OK);
    assert!(wrong.body.contains("Wrong e-mail or password"));
    assert_eq!(
        wrong.body.replace(EMAIL, "X"),
        unknown.body.replace("nobody@example.com", "X"),
        "an unknown user gets the same page"
    );
    assert!(!browser.cookies.lock().unwrap().contains_key("auth_session"));
    let consent = browser
        .submit(
            app,
            &page,
            "/oauth/login",
            &[("email", EMAIL), ("password", PASSWORD)],
        )
        .await;
    let session_line = browser.cookies.lock().unwrap()["auth_session"].1.clone();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            session_line.contains(attribute),
            "{attribute}: {session_line}"
        );
    }
    assert!(
        !session_line.contains("Secure"),
        "an http issuer's cookie cannot be Secure"
    );
    let mut forged = consent.inputs();
    forged.insert("csrf_token".into(), "forged".into());
    let form: Vec<(&str, &str)> = forged
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .chain([("decision", "allow")])
        .collect();
    assert_eq!(
        browser
            .post(&app.url("/oauth/consent"), &form, Some(&app.base))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let from_elsewhere = Browser::new();
    let form: Vec<(String, String)> = consent
        .inputs()
        .into_iter()
        .chain([("decision".to_owned(), "allow".to_owned())])
        .collect();
    let form: Vec<(&str, &str)> = form.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        from_elsewhere
            .post(&app.url("/oauth/consent"), &form, Some(&app.base))
            .await
            .status,
        StatusCode::FORBIDDEN,
        "the consent token binds to the session"
    );
}

/// A new session id at every login; prompt=login and max_age force the form; idle and
/// absolute lifetimes end the session; disabling the user ends it.
async fn sessions_end_as_configured(app: &TestApp) {
    let user_id = user(app).await;
    let client = sign_in_client(app, |new| new.first_party = true).await;
    let browser = Browser::new();
    let attempt = Attempt::new();
    code_of(
        app,
        &log_in(app, &browser, &attempt.url(app, &client.id, "openid", &[])).await,
        &attempt,
    );
    let first = browser.cookies.lock().unwrap()["auth_session"].0.clone();
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[("prompt", "login")]))
        .await;
    assert!(
        page.body.contains("name=\"password\""),
        "prompt=login shows the form"
    );
    code_of(
        app,
        &browser
            .submit(
                app,
                &page,
                "/oauth/login",
                &[("email", EMAIL), ("password", PASSWORD)],
            )
            .await,
        &attempt,
    );
    let second = browser.cookies.lock().unwrap()["auth_session"].0.clone();
    assert_ne!(first, second, "a new session id at every login");
    let stale = Browser::new();
    stale
        .cookies
        .lock()
        .unwrap()
        .insert("auth_session".into(), (first, String::new()));
    assert!(
        stale
            .get(&attempt.url(app, &client.id, "openid", &[]))
            .await
            .body
            .contains("name=\"password\""),
        "the old session ended"
    );

    app.clock.advance(Duration::from_secs(120));
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[("max_age", "60")]))
        .await;
    assert!(
        page.body.contains("name=\"password\""),
        "max_age=60 after 120 s shows the form"
    );
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[("max_age", "600")]))
        .await;
    code_of(app, &page, &attempt);

    // Idle: 30 minutes without a request.
    app.clock.advance(Duration::from_secs(30 * 60));
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[("prompt", "none")]))
        .await;
    assert_eq!(
        page.redirect_params()["error"],
        "login_required",
        "idle for 30 minutes"
    );
    // Absolute: 10 hours, even when used every few minutes.
    code_of(
        app,
        &log_in(app, &browser, &attempt.url(app, &client.id, "openid", &[])).await,
        &attempt,
    );
    for _ in 0..(10 * 60 / 20) {
        app.clock.advance(Duration::from_secs(20 * 60));
        let page = browser
            .get(&attempt.url(app, &client.id, "openid", &[("prompt", "none")]))
            .await;
        if page.redirect_params().contains_key("error") {
            break;
        }
    }
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[("prompt", "none")]))
        .await;
    assert_eq!(
        page.redirect_params()["error"],
        "login_required",
        "10 hours after the login"
    );

    code_of(
        app,
        &log_in(app, &browser, &attempt.url(app, &client.id, "openid", &[])).await,
        &attempt,
    );
    app.admin.disable_user(&user_id).await.unwrap();
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[("prompt", "none")]))
        .await;
    assert_eq!(
        page.redirect_params()["error"],
        "login_required",
        "a disabled user's session ends"
    );
}

/// RP-Initiated Logout 1.0: with a hint for the session's user and a registered URI the
/// session ends and the browser goes there with `state`; an unregistered URI is a page;
/// without a hint the user confirms.
async fn logout_ends_the_session(app: &TestApp) {
    user(app).await;
    let client = sign_in_client(app, |new| new.first_party = true).await;
    let browser = Browser::new();
    let attempt = Attempt::new();
    let code = code_of(
        app,
        &log_in(app, &browser, &attempt.url(app, &client.id, "openid", &[])).await,
        &attempt,
    );
    let tokens: Value = exchange(app, &client, &code, &attempt.verifier)
        .await
        .json()
        .await
        .unwrap();
    let hint = tokens["id_token"].as_str().unwrap();
    let logout = |params: &[(&str, &str)]| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (n, v) in params {
            query.append_pair(n, v);
        }
        app.url(&format!("/oauth/logout?{}", query.finish()))
    };
    let page = browser
        .get(&logout(&[
            ("id_token_hint", hint),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ]))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.headers.get(LOCATION).is_none());
    let page = browser.get(&logout(&[])).await;
    assert!(
        page.body.contains("csrf_token"),
        "without a hint the user confirms: {}",
        page.body
    );
    let page = browser
        .get(&logout(&[
            ("id_token_hint", hint),
            ("post_logout_redirect_uri", LOGOUT_REDIRECT),
            ("state", "bye"),
        ]))
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), format!("{LOGOUT_REDIRECT}?state=bye"));
    assert!(
        !browser.cookies.lock().unwrap().contains_key("auth_session"),
        "the cookie is cleared"
    );
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[("prompt", "none")]))
        .await;
    assert_eq!(
        page.redirect_params()["error"],
        "login_required",
        "the session is gone"
    );

    // The confirmation form ends the session too.
    code_of(
        app,
        &log_in(app, &browser, &attempt.url(app, &client.id, "openid", &[])).await,
        &attempt,
    );
    let confirm = browser
        .get(&logout(&[
            ("client_id", &client.id),
            ("post_logout_redirect_uri", LOGOUT_REDIRECT),
        ]))
        .await;
    let done = browser.submit(app, &confirm, "/oauth/logout", &[]).await;
    assert_eq!(done.location(), LOGOUT_REDIRECT);
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[("prompt", "none")]))
        .await;
    assert_eq!(page.redirect_params()["error"], "login_required");
}

/// Userinfo's RFC 6750 answers.
async fn userinfo_errors(app: &TestApp) {
    let response = app
        .http
        .get(app.url("/oauth/userinfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"oauth\""
    );
    let response = app
        .http
        .get(app.url("/oauth/userinfo"))
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (id, secret) = app.create_client(&["transcriptions:read"], &[]).await;
    let machine: Value = app
        .token(
            &[("grant_type", "client_credentials")],
            Some((&id, &secret)),
        )
        .await
        .json()
        .await
        .unwrap();
    let response = app
        .http
        .get(app.url("/oauth/userinfo"))
        .bearer_auth(machine["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "no openid scope");
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
}

crate::on_both_backends!(
    confidential_client_signs_a_user_in,
    public_client_signs_a_user_in,
    prompt_none_and_consent,
    code_exchange_errors_and_replay,
    authorization_errors,
    forms_refuse_forgeries,
    sessions_end_as_configured,
    logout_ends_the_session,
    userinfo_errors,
);

/// Cookie names and attributes by issuer: `__Host-` at an https root, `__Secure-` under a
/// path, plain over http.
#[tokio::test]
async fn cookie_names_follow_the_issuer() {
    for (issuer, name, path, secure) in [
        (
            "https://auth.example",
            "__Host-auth_session",
            "Path=/;",
            true,
        ),
        (
            "https://auth.example/tenant",
            "__Secure-auth_session",
            "Path=/tenant;",
            true,
        ),
        ("http://127.0.0.1:8080", "auth_session", "Path=/;", false),
    ] {
        let cookies = auth_server::signin::Cookies::for_issuer(issuer);
        let line = cookies.set_session("id", Duration::from_secs(36_000));
        assert!(line.starts_with(&format!("{name}=id;")), "{line}");
        assert!(line.contains(path), "{line}");
        assert_eq!(line.contains("Secure"), secure, "{line}");
        assert!(
            line.contains("HttpOnly")
                && line.contains("SameSite=Lax")
                && line.contains("Max-Age=36000"),
            "{line}"
        );
    }
}
