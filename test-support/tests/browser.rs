//! The browser harness ([`test_support::browser::Browser`]) in a real headless chromium, on two
//! local origins shaped like a sign-in: the "auth server" serves a login form under the sign-in
//! pages' Content-Security-Policy, and its POST answers 303 to the "client" on another port, as
//! the login and consent forms answer with the client's `redirect_uri`.
//!
//! * The browser types, submits, follows the cross-origin 303 and reads the client's page: the
//!   harness works, and the pages' CSP (no `form-action`) lets the redirect through.
//! * With `form-action 'self'` added, chromium blocks that redirect: the reason the pages' CSP
//!   leaves `form-action` out (docs/decisions.md, "The browser test drives Debian's chromium
//!   with fantoccini").
//! * Closing or dropping the browser leaves no process of its group alive, and dropping it
//!   removes its scratch directory.
//!
//! In CI a missing chromium or chromedriver fails these tests; elsewhere they skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use test_support::browser::Browser;
use test_support::process::PATIENCE;
use tokio::time::Instant;

/// The sign-in pages' policy (docs/plans/sign-in.md §5.8): no `form-action`.
const PAGES_CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the two origins saw.
#[derive(Default)]
struct Seen {
    /// The bodies of the form POSTs the auth origin received.
    posts: Vec<Vec<(String, String)>>,
    /// How many times the stylesheet was fetched (allowed by `style-src 'self'`).
    stylesheet: usize,
    /// The query strings the client origin's `/cb` received.
    callbacks: Vec<String>,
    /// The CSP violation reports the auth origin received (`report-uri /csp-report`).
    reports: Vec<serde_json::Value>,
}

#[derive(Clone)]
struct AuthOrigin {
    csp: String,
    client: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

/// The "auth server": `GET /login` is a form (with a hidden `csrf_token`) and a same-origin
/// stylesheet under `csp`; `POST /login` answers 303 to `http://{client}/cb?code=…&email=…`.
async fn auth_origin(csp: &str, client: SocketAddr, seen: Arc<Mutex<Seen>>) -> SocketAddr {
    let state = AuthOrigin {
        csp: csp.to_owned(),
        client,
        seen,
    };
    let router = Router::new()
        .route("/login", get(login_page).post(login))
        .route("/style.css", get(stylesheet))
        .route("/csp-report", post(csp_report))
        .with_state(state);
    serve(router).await
}

async fn login_page(State(origin): State<AuthOrigin>) -> Response {
    let page = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title>
<link rel="stylesheet" href="/style.css"></head>
<body><form method="post" action="/login">
<input type="hidden" name="csrf_token" value="t0k3n">
<label for="email">E-mail</label><input id="email" name="email" autocomplete="username">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password">
<button type="submit">Sign in</button>
</form></body></html>"#;
    (
        [
            (header::CONTENT_SECURITY_POLICY, origin.csp.clone()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Html(page),
    )
        .into_response()
}

async fn stylesheet(State(origin): State<AuthOrigin>) -> Response {
    origin.seen.lock().unwrap().stylesheet += 1;
    (
        [(header::CONTENT_TYPE, "text/css")],
        "body { font-family: sans-serif; }",
    )
        .into_response()
}

async fn csp_report(State(origin): State<AuthOrigin>, body: String) -> StatusCode {
    let report = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    origin.seen.lock().unwrap().reports.push(report);
    StatusCode::NO_CONTENT
}

async fn login(State(origin): State<AuthOrigin>, body: String) -> Response {
    let fields: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let email = fields
        .iter()
        .find(|(name, _)| name == "email")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    origin.seen.lock().unwrap().posts.push(fields);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("code", "c0de")
        .append_pair("email", &email)
        .finish();
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::LOCATION,
                format!("http://{}/cb?{query}", origin.client),
            ),
            (header::CONTENT_SECURITY_POLICY, origin.csp.clone()),
        ],
    )
        .into_response()
}

/// The "client": `GET /cb` shows who signed in.
async fn client_origin(seen: Arc<Mutex<Seen>>) -> SocketAddr {
    let router = Router::new().route(
        "/cb",
        get(
            |State(seen): State<Arc<Mutex<Seen>>>, RawQuery(query): RawQuery| async move {
                let query = query.unwrap_or_default();
                seen.lock().unwrap().callbacks.push(query.clone());
                let email = form_urlencoded::parse(query.as_bytes())
                    .find(|(name, _)| name == "email")
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default();
                Html(format!(
                    "<!doctype html><title>Client</title><p>Signed in as {email}</p>"
                ))
            },
        ),
    );
    serve(router.with_state(seen)).await
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// The live (not zombie) processes of process group `pgid`, as `(pid, name)`.
fn live_processes_of_group(pgid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let (Some(state), Some(pgrp)) = (rest.first(), rest.get(2)) else {
            continue;
        };
        if *state != "Z" && *state != "X" && pgrp.parse::<u32>() == Ok(pgid) {
            found.push((pid, name));
        }
    }
    found
}

/// Waits until no live process is left in group `pgid`.
async fn wait_until_group_is_gone(pgid: u32) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = live_processes_of_group(pgid);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still running {PATIENCE:?} after the browser was closed: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_form_under_the_pages_csp_follows_its_303_to_the_clients_origin() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let client = client_origin(seen.clone()).await;
    let auth = auth_origin(PAGES_CSP, client, seen.clone()).await;

    browser.goto(&format!("http://{auth}/login")).await;
    browser.fill("#email", "alice@example.com").await;
    browser.fill("#password", "correct horse").await;
    let shots = std::env::temp_dir().join(format!("browser-shots-{}", uuid::Uuid::new_v4()));
    let png = std::fs::read(browser.screenshot_to(&shots, "login").await).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    std::fs::remove_dir_all(&shots).unwrap();
    if std::env::var_os(test_support::browser::SCREENSHOTS_DIR).is_none() {
        assert_eq!(browser.screenshot("login").await, None);
    }
    browser.click("button[type=submit]").await;

    let url = browser
        .wait_for_url("page of the client's origin", |url| {
            url.as_str().starts_with(&format!("http://{client}/"))
        })
        .await;
    assert_eq!(
        url.as_str(),
        format!("http://{client}/cb?code=c0de&email=alice%40example.com"),
        "the tab did not reach the client's origin"
    );
    let page = browser.page_source().await;
    assert!(
        page.contains("Signed in as alice@example.com"),
        "the client's page: {page}"
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.posts,
            [vec![
                ("csrf_token".to_owned(), "t0k3n".to_owned()),
                ("email".to_owned(), "alice@example.com".to_owned()),
                ("password".to_owned(), "correct horse".to_owned()),
            ]],
            "what the form posted"
        );
        assert_eq!(
            seen.stylesheet, 1,
            "the same-origin stylesheet under the CSP"
        );
        assert_eq!(seen.callbacks.len(), 1);
    }

    let group = browser.driver_pid();
    assert!(
        live_processes_of_group(group)
            .iter()
            .any(|(_, name)| name == "chromium"),
        "chromium runs in the driver's process group: {:?}",
        live_processes_of_group(group)
    );
    browser.close().await;
    wait_until_group_is_gone(group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_action_self_would_block_the_redirect_to_the_clients_origin() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let client = client_origin(seen.clone()).await;
    let csp = format!("{PAGES_CSP}; form-action 'self'; report-uri /csp-report");
    let auth = auth_origin(&csp, client, seen.clone()).await;

    browser.goto(&format!("http://{auth}/login")).await;
    browser.fill("#email", "alice@example.com").await;
    browser.fill("#password", "correct horse").await;
    browser.click("button[type=submit]").await;

    // The POST itself is same-origin and goes out; the 303 that follows is what the policy
    // blocks, and chromium reports the violation.
    let deadline = Instant::now() + PATIENCE;
    let report = loop {
        if let Some(report) = seen.lock().unwrap().reports.first() {
            break report.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no CSP violation report within {PATIENCE:?}; the tab shows {}",
            browser.current_url().await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(
        report["csp-report"]["effective-directive"], "form-action",
        "{report}"
    );
    // A report names the URL before a redirect (so no cross-origin target leaks): the form's
    // action, which was allowed and answered; what was blocked is where its 303 pointed.
    assert_eq!(
        report["csp-report"]["blocked-uri"],
        format!("http://{auth}/login"),
        "{report}"
    );
    assert_eq!(seen.lock().unwrap().posts.len(), 1, "the form was posted");
    let url = browser.current_url().await;
    assert!(
        !url.as_str().starts_with(&format!("http://{client}/")),
        "form-action 'self' let the redirect through to {url}"
    );
    assert!(seen.lock().unwrap().callbacks.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_browser_kills_chromium_and_its_driver() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let group = browser.driver_pid();
    browser.goto("about:blank").await;
    let running = live_processes_of_group(group);
    assert!(
        running.iter().any(|(pid, _)| *pid == group),
        "the driver leads its group: {running:?}"
    );
    assert!(
        running.iter().any(|(_, name)| name == "chromium"),
        "chromium runs in the driver's group: {running:?}"
    );
    let scratch = browser.scratch_dir().to_owned();
    assert!(scratch.join("profile").is_dir(), "{}", scratch.display());
    drop(browser);
    wait_until_group_is_gone(group).await;
    assert!(
        !scratch.exists(),
        "{} outlived the browser",
        scratch.display()
    );
}
