//! The demo web app (`stack::web_app`) as a person uses it: a browser (cookies kept, redirects
//! followed by hand) opens the sign-in URL, gets the auth server's login page, logs in as the
//! demo user, allows on the consent page and lands on "Signed in as …". Also: the callback
//! refuses a `state` it did not start and a foreign `iss`; restarts reuse the web app's client,
//! and a credentials file of an earlier version gets one (with the user's profile). The printed
//! URL, against the real binary, is in `walkthrough`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use super::*;

/// A browser: follows nothing by itself, keeps cookies (by name; one host), reads forms.
pub struct Browser {
    http: reqwest::Client,
    cookies: Mutex<BTreeMap<String, String>>,
}

/// What came back.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.body))
    }

    /// The query parameters of the Location.
    pub fn redirect_params(&self) -> BTreeMap<String, String> {
        let location = self.location();
        let url = reqwest::Url::parse(&location).unwrap();
        url.query_pairs().into_owned().collect()
    }

    /// Every `<input name=… value=…>` of the page's form (hidden fields included).
    fn inputs(&self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        for tag in self.body.split("<input").skip(1) {
            let tag = &tag[..tag.find('>').unwrap()];
            let attr = |name: &str| {
                let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
                let end = start + tag[start..].find('"')?;
                Some(unescape(&tag[start..end]))
            };
            if let Some(name) = attr("name") {
                fields.push((name, attr("value").unwrap_or_default()));
            }
        }
        fields
    }

    /// The `href` of the link whose text is `text`, unescaped.
    pub fn link(&self, text: &str) -> String {
        let end = self
            .body
            .find(&format!("\">{text}</a>"))
            .unwrap_or_else(|| panic!("no link {text:?}: {}", self.body));
        let start = self.body[..end].rfind("href=\"").unwrap() + "href=\"".len();
        unescape(&self.body[start..end])
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
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn absorb(&self, response: reqwest::Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        for line in headers.get_all(SET_COOKIE) {
            let line = line.to_str().unwrap();
            let (pair, _) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let mut cookies = self.cookies.lock().unwrap();
            if line.contains("Max-Age=0") {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_owned(), value.to_owned());
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

    /// Submits `page`'s form to `url` (its hidden fields, minus `email` and `password`, plus
    /// `extra`), from the page's origin `origin`.
    pub async fn submit(
        &self,
        page: &Page,
        url: &str,
        origin: &str,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut form: Vec<(String, String)> = page
            .inputs()
            .into_iter()
            .filter(|(name, _)| name != "email" && name != "password")
            .collect();
        form.extend(
            extra
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        let response = self
            .http
            .post(url)
            .header("cookie", self.cookie_header())
            .header("origin", origin)
            .form(&form)
            .send()
            .await
            .unwrap();
        self.absorb(response).await
    }
}

/// Opens `sign_in_url` (the demo web app's start), logs in on the auth server's login page as
/// `email`/`password`, allows on the consent page (naming the demo web app), and returns the
/// page the callback shows, after checking every step's status and where it went.
pub async fn sign_in(
    browser: &Browser,
    sign_in_url: &str,
    auth_url: &str,
    email: &str,
    password: &str,
) -> Page {
    let app_origin = sign_in_url.split("/demo/").next().unwrap();
    let start = browser.get(sign_in_url).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let authorize = start.location();
    assert!(
        authorize.starts_with(&format!("{auth_url}/oauth/authorize?")),
        "{authorize}"
    );
    let params = start.redirect_params();
    assert_eq!(params["code_challenge_method"], "S256", "{params:?}");
    assert_eq!(
        params["redirect_uri"],
        format!("{app_origin}/demo/callback"),
        "{params:?}"
    );

    let login = browser.get(&authorize).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert!(
        login.body.contains("name=\"password\""),
        "the login page: {}",
        login.body
    );
    let consent = browser
        .submit(
            &login,
            &format!("{auth_url}/oauth/login"),
            auth_url,
            &[("email", email), ("password", password)],
        )
        .await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert!(
        consent.body.contains("Demo web app"),
        "the consent page names the app: {}",
        consent.body
    );
    let back = browser
        .submit(
            &consent,
            &format!("{auth_url}/oauth/consent"),
            auth_url,
            &[("decision", "allow")],
        )
        .await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    let callback = back.location();
    assert!(
        callback.starts_with(&format!("{app_origin}/demo/callback?")),
        "{callback}"
    );
    browser.get(&callback).await
}

/// The page says who signed in, with the auth server's page headers and no script.
pub fn assert_signed_in(page: &Page, name: &str, email: &str) {
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("Signed in as {name} ({email})")),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("&quot;auth_time&quot;"),
        "the id_token's claims: {}",
        page.body
    );
    assert!(!page.body.contains("<script"), "{}", page.body);
    assert_eq!(
        page.headers["content-security-policy"],
        auth_server::pages::PAGE_CSP
    );
    assert_eq!(page.headers["cache-control"], "no-store");
    assert_eq!(page.headers["x-frame-options"], "DENY");
}

/// The flow on an in-process stack, then "Sign in again" without the forms (single sign-on,
/// consent remembered), then "Sign out" back to the app's home page, after which the
/// sign-in shows the login page again.
async fn signs_in_signs_out_and_in_again(stack: &Stack) {
    let c = &stack.credentials;
    let browser = Browser::new();
    let page = sign_in(
        &browser,
        &stack.sign_in_url,
        &stack.auth_url,
        &c.user_email,
        &c.user_password,
    )
    .await;
    assert_signed_in(&page, stack::demo::DEMO_USER_NAME, &c.user_email);
    assert!(
        page.body.contains(&c.web_client_id),
        "the id_token's aud: {}",
        page.body
    );

    // Signed in already and consent given: straight back to the app.
    assert_eq!(page.link("Sign in again"), "/demo/start");
    let again = browser.get(&stack.sign_in_url).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let authorize = browser.get(&again.location()).await;
    assert_eq!(
        authorize.status,
        StatusCode::SEE_OTHER,
        "{}",
        authorize.body
    );
    let page = browser.get(&authorize.location()).await;
    assert_signed_in(&page, stack::demo::DEMO_USER_NAME, &c.user_email);

    // Sign out: the end-session endpoint accepts the app's post-logout URI.
    let logout = browser.get(&page.link("Sign out")).await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER, "{}", logout.body);
    assert_eq!(logout.location(), format!("{}/demo/", stack.api_url));
    let home = browser.get(&logout.location()).await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.link("Sign in"), "/demo/start");
    let start = browser.get(&stack.sign_in_url).await;
    let login = browser.get(&start.location()).await;
    assert!(
        login.body.contains("name=\"password\""),
        "signed out: the login page again: {}",
        login.body
    );
}

#[tokio::test]
async fn a_person_signs_in_to_the_demo_web_app_and_out_again_on_sqlite() {
    let dirs = Dirs::new();
    let stack = Stack::start(dirs.config()).await.unwrap();
    signs_in_signs_out_and_in_again(&stack).await;
    stack.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_person_signs_in_to_the_demo_web_app_on_postgres_and_redis() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let Some(redis) = reachable_url().await else {
        return;
    };
    let dirs = Dirs::new();
    let prefix = format!("e2e-{}", Uuid::new_v4().simple());
    let config = StackConfig {
        database_url: Some(db.url.clone()),
        redis_url: Some(SecretString::from(redis.clone())),
        queue_prefix: prefix.clone(),
        ..dirs.config()
    };
    let stack = Stack::start(config).await.unwrap();
    signs_in_signs_out_and_in_again(&stack).await;
    stack.shutdown().await.unwrap();
    backends::assert_no_sqlite_files(&dirs.0);
    test_support::redis::delete_prefix(&redis, &prefix).await;
}

/// RFC 9207 §2.4 and RFC 6749 §10.12: a callback whose `state` the app did not start (or has
/// used) is refused, and so is one whose `iss` is not the auth server's, before any code is
/// exchanged.
#[tokio::test]
async fn the_callback_refuses_a_state_it_did_not_start_and_a_foreign_issuer() {
    let dirs = Dirs::new();
    let stack = Stack::start(dirs.config()).await.unwrap();
    let browser = Browser::new();
    let callback = format!("{}/demo/callback", stack.api_url);
    let iss = stack.auth_url.as_str();

    let unknown = browser
        .get(&format!("{callback}?code=c&state=never-started&iss={iss}"))
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
    assert!(
        unknown.body.contains("unknown, used or expired"),
        "{}",
        unknown.body
    );
    assert_eq!(
        unknown.headers["content-security-policy"],
        auth_server::pages::PAGE_CSP
    );

    for foreign in ["&iss=http%3A%2F%2Fevil.example", ""] {
        let start = browser.get(&stack.sign_in_url).await;
        let state = start.redirect_params()["state"].clone();
        let url = format!("{callback}?code=c&state={state}{foreign}");
        let refused = browser.get(&url).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert!(refused.body.contains("RFC 9207"), "{}", refused.body);
        // The state was used up by the refused response.
        let replayed = browser
            .get(&format!("{callback}?code=c&state={state}&iss={iss}"))
            .await;
        assert!(
            replayed.body.contains("unknown, used or expired"),
            "{}",
            replayed.body
        );
    }

    // The auth server's error comes back to the app with the state: shown, nothing exchanged.
    let start = browser.get(&stack.sign_in_url).await;
    let state = start.redirect_params()["state"].clone();
    let denied = browser
        .get(&format!(
            "{callback}?error=access_denied&state={state}&iss={iss}"
        ))
        .await;
    assert_eq!(denied.status, StatusCode::BAD_REQUEST);
    assert!(denied.body.contains("access_denied"), "{}", denied.body);
    stack.shutdown().await.unwrap();
}

/// A free loopback port for a stack that is restarted on the same address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A restart on the same address reuses the web app's client; on another API address its
/// redirect URIs are stale, so it is replaced; a credentials file written before the web app
/// existed gets one, and the demo user gets the profile the page shows.
#[tokio::test]
async fn restarts_reuse_the_web_apps_client_and_an_older_credentials_file_gets_one() {
    let dirs = Dirs::new();
    let config = StackConfig {
        api_bind: SocketAddr::from(([127, 0, 0, 1], free_port())),
        ..dirs.config()
    };
    let stack = Stack::start(config.clone()).await.unwrap();
    let first = stack.credentials.web_client_id.clone();
    assert!(!first.is_empty());
    stack.shutdown().await.unwrap();

    let stack = Stack::start(config.clone()).await.unwrap();
    assert_eq!(stack.credentials.web_client_id, first, "reused");
    stack.shutdown().await.unwrap();

    // Another API port: a client for the new redirect URI.
    let moved = Stack::start(dirs.config()).await.unwrap();
    let second = moved.credentials.web_client_id.clone();
    assert_ne!(second, first);
    let c = &moved.credentials;
    let page = sign_in(
        &Browser::new(),
        &moved.sign_in_url,
        &moved.auth_url,
        &c.user_email,
        &c.user_password,
    )
    .await;
    assert_signed_in(&page, stack::demo::DEMO_USER_NAME, &c.user_email);
    let demo_client = c.client_id.clone();
    moved.shutdown().await.unwrap();

    // The file of an earlier version, and a user without a profile.
    let file = dirs.0.join("data/demo-credentials.json");
    let mut old: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let object = old.as_object_mut().unwrap();
    object.remove("web_client_id");
    object.remove("web_client_secret");
    let email = object["user_email"].as_str().unwrap().to_owned();
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, serde_json::to_vec(&old).unwrap()).unwrap();
    let admin = auth_server::admin::Admin::open(&auth_server::admin::AdminOptions::new(&format!(
        "sqlite:{}",
        config.data_dir.join("auth-server.db").display()
    )))
    .await
    .unwrap();
    let unset = auth_server::admin::ProfileUpdate {
        display_name: Some(None),
        email_verified: Some(false),
    };
    admin.set_user_profile(&email, unset).await.unwrap();
    drop(admin);

    let upgraded = Stack::start(dirs.config()).await.unwrap();
    let c = &upgraded.credentials;
    assert_eq!(c.client_id, demo_client, "the demo client is kept");
    assert!(!c.web_client_id.is_empty() && c.web_client_id != second);
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["web_client_id"], c.web_client_id.as_str());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let page = sign_in(
        &Browser::new(),
        &upgraded.sign_in_url,
        &upgraded.auth_url,
        &c.user_email,
        &c.user_password,
    )
    .await;
    assert_signed_in(&page, stack::demo::DEMO_USER_NAME, &c.user_email);
    upgraded.shutdown().await.unwrap();
}
