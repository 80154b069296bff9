//! Probe: how oxide-auth 0.6.1 / oxide-auth-async 0.2.1 / oxide-auth-axum 0.6.0 answer the
//! authorization-code + PKCE flow, served over real HTTP by axum 0.8. Driven by probe.sh (curl).
//!
//! Stock primitives only (ClientMap, AuthMap, TokenMap, Pkce::required), except a pass-through
//! wrapper around the authorizer that prints the code lifetime oxide-auth puts on the grant and can
//! override it (CODE_TTL_SECS), to see whether an override is honoured at the token endpoint.
use std::sync::Arc;

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use oxide_auth::{
    endpoint::{OAuthError, OwnerConsent, QueryParameter, Scopes, Solicitation, Template},
    frontends::simple::extensions::{AddonList, Pkce},
    primitives::{
        authorizer::{AuthMap, Authorizer},
        generator::RandomGenerator,
        grant::Grant,
        issuer::TokenMap,
        registrar::{Client, ClientMap, ExactUrl, IgnoreLocalPortUrl, RegisteredUrl},
    },
};
use oxide_auth_async::endpoint::{
    access_token::AccessTokenFlow, authorization::AuthorizationFlow, Endpoint, Extension,
    OwnerSolicitor,
};
use oxide_auth_axum::{OAuthRequest, OAuthResponse, WebError};
use tokio::sync::Mutex;

const ISSUER: &str = "https://as.example";

/// Passes through to the stock AuthMap; prints `until - now` and optionally overrides it.
struct SpyAuthorizer {
    inner: AuthMap<RandomGenerator>,
    ttl_override: Option<i64>,
}

impl Authorizer for SpyAuthorizer {
    fn authorize(&mut self, mut grant: Grant) -> Result<String, ()> {
        let lifetime = grant.until.signed_duration_since(chrono::Utc::now()).num_seconds();
        println!("authorizer: oxide-auth set grant.until = now + {lifetime} s");
        if let Some(ttl) = self.ttl_override {
            grant.until = chrono::Utc::now() + chrono::Duration::seconds(ttl);
            println!("authorizer: overridden to now + {ttl} s");
        }
        self.inner.authorize(grant)
    }
    fn extract(&mut self, code: &str) -> Result<Option<Grant>, ()> {
        let g = self.inner.extract(code)?;
        println!("authorizer: extract -> {}", if g.is_some() { "grant" } else { "none" });
        Ok(g)
    }
}

/// Consent: `decision=deny` in the query denies, anything else authorizes "alice".
struct Solicitor;

#[async_trait::async_trait]
impl OwnerSolicitor<OAuthRequest> for Solicitor {
    async fn check_consent(
        &mut self, req: &mut OAuthRequest, _: Solicitation<'_>,
    ) -> OwnerConsent<OAuthResponse> {
        let deny = OAuthRequest::query(req)
            .and_then(|q| q.unique_value("decision").map(|v| v == "deny"))
            .unwrap_or(false);
        if deny { OwnerConsent::Denied } else { OwnerConsent::Authorized("alice".into()) }
    }
}

struct Inner {
    registrar: ClientMap,
    authorizer: SpyAuthorizer,
    issuer: TokenMap<RandomGenerator>,
    addons: AddonList,
    solicitor: Solicitor,
}

struct Ep<'a>(&'a mut Inner);

impl Endpoint<OAuthRequest> for Ep<'_> {
    type Error = WebError;
    fn registrar(&self) -> Option<&(dyn oxide_auth_async::primitives::Registrar + Sync)> {
        Some(&self.0.registrar)
    }
    fn authorizer_mut(&mut self) -> Option<&mut (dyn oxide_auth_async::primitives::Authorizer + Send)> {
        Some(&mut self.0.authorizer)
    }
    fn issuer_mut(&mut self) -> Option<&mut (dyn oxide_auth_async::primitives::Issuer + Send)> {
        Some(&mut self.0.issuer)
    }
    fn owner_solicitor(&mut self) -> Option<&mut (dyn OwnerSolicitor<OAuthRequest> + Send)> {
        Some(&mut self.0.solicitor)
    }
    fn scopes(&mut self) -> Option<&mut dyn Scopes<OAuthRequest>> {
        None
    }
    fn response(&mut self, _: &mut OAuthRequest, _: Template) -> Result<OAuthResponse, WebError> {
        Ok(OAuthResponse::default())
    }
    fn error(&mut self, err: OAuthError) -> WebError {
        println!("endpoint.error({err:?})");
        WebError::Endpoint(err)
    }
    fn web_error(&mut self, err: WebError) -> WebError {
        err
    }
    fn extension(&mut self) -> Option<&mut (dyn Extension + Send)> {
        Some(&mut self.0.addons)
    }
}

type Shared = Arc<Mutex<Inner>>;

async fn authorize(State(st): State<Shared>, req: OAuthRequest) -> Response {
    let mut inner = st.lock().await;
    let mut flow = match AuthorizationFlow::prepare(Ep(&mut inner)) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    match flow.execute(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

/// The same, then our own code appends RFC 9207 `iss` to whatever Location oxide-auth produced.
async fn authorize_iss(st: State<Shared>, req: OAuthRequest) -> Response {
    let mut resp = authorize(st, req).await;
    if let Some(loc) = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()) {
        let mut url = url::Url::parse(loc).expect("oxide-auth wrote a URL");
        url.query_pairs_mut().append_pair("iss", ISSUER);
        let v = HeaderValue::from_str(url.as_str()).expect("url is a header value");
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

async fn token(State(st): State<Shared>, req: OAuthRequest) -> Response {
    let mut inner = st.lock().await;
    let mut flow = match AccessTokenFlow::prepare(Ep(&mut inner)) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    match flow.execute(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

fn exact(s: &str) -> RegisteredUrl {
    RegisteredUrl::Exact(s.parse::<ExactUrl>().expect("valid"))
}

#[tokio::main]
async fn main() {
    let mut registrar = ClientMap::new();
    // confidential client, one exact redirect URI
    registrar.register_client(Client::confidential(
        "conf",
        exact("https://client.example/cb"),
        "openid profile".parse().expect("scope"),
        b"s3cret",
    ));
    // public native client: exact https URI plus the library's "ignore port on localhost" kind,
    // registered for localhost, 127.0.0.1 and [::1]
    registrar.register_client(
        Client::public("native", exact("https://app.example/cb"), "openid".parse().expect("scope"))
            .with_additional_redirect_uris(vec![
                RegisteredUrl::IgnorePortOnLocalhost(IgnoreLocalPortUrl::new("http://localhost/cb").expect("url")),
                RegisteredUrl::IgnorePortOnLocalhost(IgnoreLocalPortUrl::new("http://127.0.0.1/cb").expect("url")),
                RegisteredUrl::IgnorePortOnLocalhost(IgnoreLocalPortUrl::new("http://[::1]/cb").expect("url")),
            ]),
    );
    let mut addons = AddonList::new();
    addons.push_code(Pkce::required()); // S256 only unless allow_plain() is called
    let ttl_override = std::env::var("CODE_TTL_SECS").ok().and_then(|v| v.parse().ok());
    let inner = Inner {
        registrar,
        authorizer: SpyAuthorizer { inner: AuthMap::new(RandomGenerator::new(32)), ttl_override },
        issuer: TokenMap::new(RandomGenerator::new(32)),
        addons,
        solicitor: Solicitor,
    };
    let app = Router::new()
        .route("/authorize", get(authorize).post(authorize))
        .route("/authorize-iss", get(authorize_iss))
        .route("/token", post(token))
        .with_state(Arc::new(Mutex::new(inner)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!("listening {}", listener.local_addr().expect("addr"));
    axum::serve(listener, app).await.expect("serve");
}
