//! Sign-in for people: the authorization code flow (RFC 6749 §4.1) with PKCE (RFC 7636) and
//! OpenID Connect Core 1.0, through the server's own login and consent pages.

pub mod codes;
pub mod id_token;
pub mod pkce;
pub mod redirect_uri;
pub mod request;

/// The OpenID Connect identity scopes (OIDC Core §3.1.2.1, §5.4) with their descriptions, as
/// the consent page shows them. They exist in every database and are not permissions: a client
/// registered with one may ask for it for any user.
pub const IDENTITY_SCOPES: [(&str, &str); 3] = [
    ("openid", "Know who you are (your user id)"),
    ("profile", "See your name"),
    ("email", "See your e-mail address"),
];

/// Whether `scope` is one of the [`IDENTITY_SCOPES`].
pub fn is_identity_scope(scope: &str) -> bool {
    IDENTITY_SCOPES.iter().any(|(name, _)| *name == scope)
}

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::clock::Clock;
use crate::grants::TokenService;
use crate::keys::KeyError;
use crate::model::{AuthorizationCodeRecord, BrowserSession, Client, User};
use crate::secrets::SecretHasher;
use crate::store::{Store, StoreError};
use codes::{CodeError, random_token};
use request::{AuthorizationRequest, AuthorizeError, append_query};

/// `last_seen` is written at most this often, to keep single sign-on off the write path.
pub const SESSION_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// The names and attributes of the browser cookies, from the issuer URL: `__Host-` names for
/// an https issuer at the root, `__Secure-` for one with a path (`__Host-` requires `Path=/`),
/// plain names over http (browsers refuse prefixed cookies without `Secure`).
#[derive(Debug, Clone)]
pub struct Cookies {
    pub session: String,
    pub csrf: String,
    /// `Path=…; HttpOnly` plus `; Secure` over https.
    attributes: String,
}

impl Cookies {
    pub fn for_issuer(issuer: &str) -> Cookies {
        let secure = issuer.starts_with("https://");
        let path = crate::issuer::issuer_path(issuer);
        let prefix = match (secure, path.is_empty()) {
            (true, true) => "__Host-",
            (true, false) => "__Secure-",
            (false, _) => "",
        };
        let path = if path.is_empty() { "/" } else { path };
        Cookies {
            session: format!("{prefix}auth_session"),
            csrf: format!("{prefix}auth_csrf"),
            attributes: format!(
                "Path={path}; HttpOnly{}",
                if secure { "; Secure" } else { "" }
            ),
        }
    }

    /// `Set-Cookie` of the session cookie (`SameSite=Lax`: sent on the top-level navigation
    /// from the client back to the authorization endpoint).
    pub fn set_session(&self, value: &str, max_age: Duration) -> String {
        format!(
            "{}={value}; {}; SameSite=Lax; Max-Age={}",
            self.session,
            self.attributes,
            max_age.as_secs()
        )
    }

    /// `Set-Cookie` that removes the session cookie.
    pub fn clear_session(&self) -> String {
        format!(
            "{}=; {}; SameSite=Lax; Max-Age=0",
            self.session, self.attributes
        )
    }

    /// `Set-Cookie` of the login form's CSRF cookie (`SameSite=Strict`, one hour).
    pub fn set_csrf(&self, value: &str) -> String {
        format!(
            "{}={value}; {}; SameSite=Strict; Max-Age=3600",
            self.csrf, self.attributes
        )
    }
}

/// The form a CSRF token protects (each binds to something else; see [`SignIn::csrf_token`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormPurpose {
    Login,
    Consent,
    Logout,
}

impl FormPurpose {
    fn label(self) -> &'static str {
        match self {
            FormPurpose::Login => "login",
            FormPurpose::Consent => "consent",
            FormPurpose::Logout => "logout",
        }
    }
}

/// A live browser session and its user.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session: BrowserSession,
    /// The cookie's value (the session id).
    pub id: String,
    pub user: User,
}

/// What the authorization endpoint does next with a valid request.
#[derive(Debug)]
pub enum Decision {
    /// Show the login form.
    Login,
    /// Ask the user to allow these scopes (identity scopes first).
    Consent {
        user: User,
        scopes: BTreeSet<String>,
    },
    /// Send the browser back to the client with this `Location`.
    Redirect(String),
}

/// Failures on our side while signing someone in.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl From<CodeError> for SignInError {
    fn from(err: CodeError) -> Self {
        match err {
            CodeError::Store(e) => SignInError::Store(e),
            CodeError::Key(e) => SignInError::Key(e),
        }
    }
}

/// The sign-in service behind the authorization, login, consent and end-session endpoints;
/// knows no HTTP framework.
pub struct SignIn {
    pub tokens: Arc<TokenService>,
    store: Arc<dyn Store>,
    hasher: SecretHasher,
    issuer: Arc<str>,
    clock: Arc<dyn Clock>,
    idle_ttl: Duration,
    session_ttl: Duration,
    pub cookies: Cookies,
}

impl SignIn {
    pub fn new(
        tokens: Arc<TokenService>,
        hasher: SecretHasher,
        issuer: Arc<str>,
        clock: Arc<dyn Clock>,
        idle_ttl: Duration,
        session_ttl: Duration,
    ) -> SignIn {
        SignIn {
            store: tokens.store.clone(),
            cookies: Cookies::for_issuer(&issuer),
            tokens,
            hasher,
            issuer,
            clock,
            idle_ttl,
            session_ttl,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The absolute session lifetime (the cookie's `Max-Age`).
    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    fn session_hash(&self, id: &str) -> Vec<u8> {
        self.hasher.hash(&format!("browser-session:{id}"))
    }

    /// The client named by a request, if it exists.
    pub async fn client(&self, client_id: Option<&str>) -> Result<Option<Client>, SignInError> {
        match client_id {
            Some(id) if id.len() <= 255 => Ok(self.store.find_client(id).await?),
            _ => Ok(None),
        }
    }

    /// The live session the cookie `id` names, with its (enabled) user; renews `last_seen` at
    /// most every [`SESSION_TOUCH_INTERVAL`].
    pub async fn session(&self, id: Option<&str>) -> Result<Option<SignedIn>, SignInError> {
        let Some(id) = id.filter(|id| id.len() == 43) else {
            return Ok(None);
        };
        let now = self.now();
        let hash = self.session_hash(id);
        let idle_after = now - self.idle_ttl.as_secs() as i64;
        let Some(session) = self
            .store
            .find_browser_session(&hash, now, idle_after)
            .await?
        else {
            return Ok(None);
        };
        let Some(user) = self
            .store
            .find_user(&session.user_id)
            .await?
            .filter(|u| !u.disabled)
        else {
            return Ok(None);
        };
        if now - session.last_seen >= SESSION_TOUCH_INTERVAL.as_secs() as i64 {
            self.store.touch_browser_session(&hash, now).await?;
        }
        Ok(Some(SignedIn {
            session,
            id: id.to_owned(),
            user,
        }))
    }

    /// Starts a session for `user` who just entered their password, under a new id (no
    /// session fixation); the session `previous` names, if any, ends.
    pub async fn start_session(
        &self,
        user: User,
        previous: Option<&str>,
    ) -> Result<SignedIn, SignInError> {
        if let Some(previous) = previous {
            self.store
                .delete_browser_session(&self.session_hash(previous))
                .await?;
        }
        let id = random_token()?;
        let now = self.now();
        let session = BrowserSession {
            id_hash: self.session_hash(&id),
            user_id: user.id.clone(),
            auth_time: now,
            last_seen: now,
            expires_at: now + self.session_ttl.as_secs() as i64,
            amr: "pwd".to_owned(),
        };
        self.store.insert_browser_session(&session).await?;
        Ok(SignedIn { session, id, user })
    }

    /// Ends the session the cookie `id` names.
    pub async fn end_session(&self, id: &str) -> Result<bool, SignInError> {
        Ok(self
            .store
            .delete_browser_session(&self.session_hash(id))
            .await?)
    }

    /// A form's CSRF token: `base64url(HMAC(pepper, "csrf:" ‖ purpose ‖ 0 ‖ binding ‖ 0 ‖
    /// SHA-256(request)))`. The login form binds to its CSRF cookie, the consent and logout
    /// forms to the session id; `request` is the form's hidden request.
    pub fn csrf_token(&self, purpose: FormPurpose, binding: &str, request: &str) -> String {
        let request_digest = URL_SAFE_NO_PAD.encode(digest(&SHA256, request.as_bytes()));
        URL_SAFE_NO_PAD.encode(self.hasher.hash(&format!(
            "csrf:{}\0{binding}\0{request_digest}",
            purpose.label()
        )))
    }

    /// Whether `token` is the form's token, compared in constant time.
    pub fn verify_csrf(
        &self,
        purpose: FormPurpose,
        binding: &str,
        request: &str,
        token: &str,
    ) -> bool {
        let Ok(mac) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        let request_digest = URL_SAFE_NO_PAD.encode(digest(&SHA256, request.as_bytes()));
        self.hasher.verify(
            &format!("csrf:{}\0{binding}\0{request_digest}", purpose.label()),
            &mac,
        )
    }

    /// A new random value for the login form's CSRF cookie.
    pub fn new_csrf_cookie(&self) -> Result<String, SignInError> {
        Ok(random_token()?)
    }

    /// Whether `signed_in` may serve `request` without the login form: not when the request
    /// asks for a login (`prompt=login`), the login is older than `max_age`, or an
    /// `id_token_hint` names another user (OIDC Core §3.1.2.1).
    pub fn is_usable(&self, request: &AuthorizationRequest, signed_in: &SignedIn) -> bool {
        if request.prompt.login {
            return false;
        }
        if let Some(max_age) = request.max_age
            && self.now() - signed_in.session.auth_time > max_age
        {
            return false;
        }
        if let Some(hint) = &request.id_token_hint
            && self.id_token_hint(hint).map(|h| h.sub) != Some(signed_in.user.id.clone())
        {
            return false;
        }
        true
    }

    /// What happens next for a valid `request` from `client`, given the browser's session.
    /// `fresh_login`: the user entered their password in this request (so `prompt=login` and
    /// `max_age` are satisfied).
    pub async fn decide(
        &self,
        request: &AuthorizationRequest,
        client: &Client,
        signed_in: Option<&SignedIn>,
        fresh_login: bool,
    ) -> Result<Result<Decision, AuthorizeError>, SignInError> {
        let signed_in = signed_in.filter(|s| fresh_login || self.is_usable(request, s));
        let Some(signed_in) = signed_in else {
            if request.prompt.none {
                return Ok(Err(AuthorizeError::redirect(
                    request,
                    "login_required",
                    "the user is not signed in",
                )));
            }
            return Ok(Ok(Decision::Login));
        };
        let scopes = granted_scope(request, client, &signed_in.user);
        let needs_consent = !client.first_party
            && (request.prompt.consent
                || !self
                    .store
                    .find_consent(&signed_in.user.id, &client.id)
                    .await?
                    .is_some_and(|c| scopes.is_subset(&c.scopes)));
        if needs_consent {
            if request.prompt.none {
                return Ok(Err(AuthorizeError::redirect(
                    request,
                    "consent_required",
                    "the user has not allowed this application yet",
                )));
            }
            return Ok(Ok(Decision::Consent {
                user: signed_in.user.clone(),
                scopes,
            }));
        }
        Ok(Ok(Decision::Redirect(
            self.issue_code(request, signed_in, &scopes).await?,
        )))
    }

    /// The user allowed `scopes` to the client: remember it and issue the code.
    pub async fn allow(
        &self,
        request: &AuthorizationRequest,
        client: &Client,
        signed_in: &SignedIn,
    ) -> Result<String, SignInError> {
        let scopes = granted_scope(request, client, &signed_in.user);
        self.store
            .add_consent(&signed_in.user.id, &client.id, &scopes, self.clock.now())
            .await?;
        self.issue_code(request, signed_in, &scopes).await
    }

    /// Stores a code for `request` and returns the `Location` carrying it, `state` and `iss`
    /// (RFC 6749 §4.1.2, RFC 9207 §2).
    async fn issue_code(
        &self,
        request: &AuthorizationRequest,
        signed_in: &SignedIn,
        scopes: &BTreeSet<String>,
    ) -> Result<String, SignInError> {
        let record = AuthorizationCodeRecord {
            code_hash: Vec::new(),
            client_id: request.client_id.clone(),
            user_id: signed_in.user.id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            scope: scopes.iter().cloned().collect::<Vec<_>>().join(" "),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            auth_time: signed_in.session.auth_time,
            amr: signed_in.session.amr.clone(),
            expires_at: 0,
            used_at: None,
            family_id: None,
            access_jti: None,
            access_expires_at: None,
        };
        let code = self.tokens.codes.issue(record).await?;
        metrics::counter!("oauth_authorizations_total", "result" => "code").increment(1);
        let mut pairs = vec![("code", code.as_str())];
        if let Some(state) = &request.state {
            pairs.push(("state", state));
        }
        pairs.push(("iss", &self.issuer));
        Ok(append_query(&request.redirect_uri, &pairs))
    }

    /// The `Location` of an error response to the client (RFC 6749 §4.1.2.1, with `iss`).
    pub fn error_location(&self, redirect: &request::Redirect) -> String {
        metrics::counter!("oauth_authorizations_total", "result" => redirect.error).increment(1);
        let mut pairs = vec![
            ("error", redirect.error),
            ("error_description", redirect.description),
        ];
        if let Some(state) = &redirect.state {
            pairs.push(("state", state));
        }
        pairs.push(("iss", &self.issuer));
        append_query(&redirect.redirect_uri, &pairs)
    }

    /// Reads an id_token we issued (as a hint: OIDC Core §3.1.2.1, RP-Initiated Logout §2):
    /// our signature and issuer; an expired one is accepted.
    pub fn id_token_hint(&self, token: &str) -> Option<IdTokenHint> {
        let mut parts = token.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Header {
            kid: String,
            typ: Option<String>,
        }
        let header_json: Header =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header_json.typ.as_deref() != Some(crate::keys::ID_TOKEN_TYP) {
            return None;
        }
        let keys = self.tokens.keys.current();
        let key = keys.published.get(&header_json.kid)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let message = &token[..header.len() + 1 + claims.len()];
        if !key.verify(message.as_bytes(), &signature) {
            return None;
        }
        let hint: IdTokenHint =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        (hint.iss == *self.issuer).then_some(hint)
    }
}

/// The claims of an id_token hint that matter.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct IdTokenHint {
    pub iss: String,
    pub sub: String,
    /// The client it was issued to.
    pub aud: String,
}

/// The scope a request gets for `user`: the identity scopes asked for, plus the permission
/// scopes asked for that the user holds — all within the client's scopes (the request was
/// already refused if it asked for more). A request without `scope` asks for all of the
/// client's scopes.
pub fn granted_scope(
    request: &AuthorizationRequest,
    client: &Client,
    user: &User,
) -> BTreeSet<String> {
    let asked = request.scope.as_ref().unwrap_or(&client.scopes);
    asked
        .iter()
        .filter(|s| client.scopes.contains(*s))
        .filter(|s| is_identity_scope(s) || user.permissions.contains(*s))
        .cloned()
        .collect()
}
