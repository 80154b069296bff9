//! The auth server, a protected app, a switchable JWKS proxy and token forging tools.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use test_support::auth::TestAuthServer;
use token_guard::{GuardConfig, Principal, RevocationList, StaticRevocationList, TokenGuard};
use uuid::Uuid;

pub const AUDIENCE: &str = "transcription-api";
pub const WRITE: &str = "transcriptions:write";
pub const READ: &str = "transcriptions:read";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The real auth server on 127.0.0.1:0 with a fresh SQLite database ([`TestAuthServer`]),
/// plus tools to forge tokens with its private key.
pub struct AuthServer {
    server: TestAuthServer,
    /// PKCS#8 PEM of the access-token key active at start (ES256 unless
    /// [`spawn_with`](Self::spawn_with) sets `ACCESS_TOKEN_ALG`).
    pub active_pem: String,
}

impl std::ops::Deref for AuthServer {
    type Target = TestAuthServer;

    fn deref(&self) -> &TestAuthServer {
        &self.server
    }
}

impl AuthServer {
    pub async fn spawn() -> AuthServer {
        AuthServer::spawn_with(|_| {}).await
    }

    /// Starts the server after `adjust` has changed its configuration.
    pub async fn spawn_with(
        adjust: impl FnOnce(&mut auth_server::config::ServerConfig),
    ) -> AuthServer {
        let server = TestAuthServer::spawn_with(adjust).await;
        let kid = server.keys.current().access().kid().to_owned();
        let active_pem = server.private_key_pem(&kid).await;
        AuthServer { server, active_pem }
    }

    pub fn active_kid(&self) -> String {
        self.keys.current().access().kid().to_owned()
    }

    /// Claims as the auth server would issue them, with `changes` merged in (a `null` value
    /// removes the claim).
    pub fn claims(&self, changes: Value) -> Value {
        let now = now();
        let mut claims = json!({
            "iss": self.issuer, "sub": "forged-sub", "aud": AUDIENCE,
            "exp": now + 900, "iat": now, "nbf": now, "jti": Uuid::new_v4().to_string(),
            "client_id": "forged-client", "scope": format!("{WRITE} {READ}"),
        });
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    /// Signs `claims` with the private key of the ES256 key active at start: validly signed
    /// by a published key. `header` adjusts typ and kid.
    pub fn sign(&self, claims: &Value, typ: Option<&str>, kid: Option<&str>) -> String {
        let key = EncodingKey::from_ec_pem(self.active_pem.as_bytes()).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.typ = typ.map(str::to_owned);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// [`sign`](Self::sign) with the usual header.
    pub fn sign_claims(&self, claims: &Value) -> String {
        self.sign(claims, Some("at+jwt"), Some(&self.active_kid()))
    }
}

/// Replaces the payload of a signed token, keeping header and signature.
pub fn with_payload(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let header = parts.next().unwrap();
    parts.next().unwrap();
    let signature = parts.next().unwrap();
    format!("{header}.{}.{signature}", b64(claims.to_string()))
}

/// The claims of a token, unverified.
pub fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// An axum app protected by the guard on 127.0.0.1:0.
pub struct ProtectedApp {
    pub base: String,
    pub guard: TokenGuard,
    pub http: reqwest::Client,
}

async fn me(principal: Principal) -> axum::Json<Value> {
    axum::Json(json!({
        "sub": principal.sub, "client_id": principal.client_id, "jti": principal.jti,
        "scopes": principal.scopes, "exp": principal.exp,
    }))
}

async fn create(principal: Principal) -> impl IntoResponse {
    (StatusCode::CREATED, principal.sub)
}

impl ProtectedApp {
    pub async fn spawn(guard: TokenGuard) -> ProtectedApp {
        let app = Router::new()
            .route("/me", get(me))
            .route(
                "/transcriptions",
                post(create).route_layer(guard.require_scope(WRITE)),
            )
            .route(
                "/read-and-write",
                get(me)
                    .route_layer(guard.require_scope(READ))
                    .route_layer(guard.require_scope(WRITE)),
            )
            .with_state(guard.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        ProtectedApp {
            base,
            guard,
            http: reqwest::Client::new(),
        }
    }

    /// `GET path` with `Authorization: Bearer <token>`.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.get_raw(path, Some(format!("Bearer {token}").as_bytes()))
            .await
    }

    /// `GET path` with an arbitrary `Authorization` value (or none).
    pub async fn get_raw(&self, path: &str, authorization: Option<&[u8]>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(value) = authorization {
            request = request.header("authorization", HeaderValue::from_bytes(value).unwrap());
        }
        request.send().await.unwrap()
    }

    pub async fn post(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

/// Guard settings for `auth` with its JWKS at `jwks_url`.
pub fn guard_config(auth: &AuthServer, jwks_url: &str) -> GuardConfig {
    GuardConfig::new(&auth.issuer, AUDIENCE).with_jwks_url(jwks_url)
}

/// A guard reading the auth server's JWKS directly, with an in-memory deny-list.
pub async fn guard(auth: &AuthServer) -> (TokenGuard, Arc<StaticRevocationList>) {
    let revoked = Arc::new(StaticRevocationList::new());
    let list: Arc<dyn RevocationList> = revoked.clone();
    let guard = TokenGuard::new(guard_config(auth, &auth.jwks_url()), list)
        .await
        .unwrap();
    (guard, revoked)
}

/// The auth server, a guard on it and the protected app.
pub async fn stack() -> (AuthServer, ProtectedApp, Arc<StaticRevocationList>) {
    let auth = AuthServer::spawn().await;
    let (guard, revoked) = guard(&auth).await;
    let app = ProtectedApp::spawn(guard).await;
    (auth, app, revoked)
}

/// Asserts a 401 `invalid_token` answer and returns its `error_description`.
pub async fn assert_invalid_token(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with(&format!(
            "Bearer realm=\"{AUDIENCE}\", error=\"invalid_token\", error_description=\""
        )),
        "{challenge}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    body["error_description"].as_str().unwrap().to_owned()
}

/// A JWKS endpoint in front of the auth server's that can fail, hide a key, and counts hits.
pub struct JwksProxy {
    pub url: String,
    pub hits: Arc<AtomicUsize>,
    pub down: Arc<AtomicBool>,
    pub hidden_kid: Arc<Mutex<Option<String>>>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    hits: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    hidden_kid: Arc<Mutex<Option<String>>>,
}

async fn proxied_jwks(State(state): State<ProxyState>) -> axum::response::Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let mut jwks: Value = reqwest::get(&state.upstream)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hidden = state.hidden_kid.lock().unwrap().clone();
    if let Some(hidden) = hidden {
        jwks["keys"]
            .as_array_mut()
            .unwrap()
            .retain(|k| k["kid"] != hidden.as_str());
    }
    ([("cache-control", "public, max-age=300")], axum::Json(jwks)).into_response()
}

impl JwksProxy {
    pub async fn spawn(upstream: String) -> JwksProxy {
        let state = ProxyState {
            upstream,
            hits: Arc::default(),
            down: Arc::default(),
            hidden_kid: Arc::default(),
        };
        let app = Router::new()
            .route("/jwks.json", get(proxied_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksProxy {
            url,
            hits: state.hits,
            down: state.down,
            hidden_kid: state.hidden_kid,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Polls `check` until it holds or `deadline` passes; returns how long it took.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
