#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

/// What a value looks like once minijinja has HTML-escaped it.
fn escaped(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

/// A fresh directory for operator files.
fn operator_dir(files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pages-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

fn hostile() -> &'static str {
    r#"<script>alert("x")</script>'&"#
}

/// Every page, rendered with the full fixtures, by name.
fn every_page(pages: &Pages) -> Vec<(&'static str, String)> {
    vec![
        ("login", pages.login(&fixtures::login(true)).unwrap()),
        (
            "login (empty)",
            pages.login(&fixtures::login(false)).unwrap(),
        ),
        ("consent", pages.consent(&fixtures::consent(true)).unwrap()),
        ("error", pages.error(&fixtures::error()).unwrap()),
        ("logout", pages.logout(&fixtures::logout(true)).unwrap()),
        (
            "logout (no client)",
            pages.logout(&fixtures::logout(false)).unwrap(),
        ),
        (
            "signed out",
            pages.signed_out(&fixtures::signed_out()).unwrap(),
        ),
    ]
}

#[test]
fn every_page_is_a_complete_document() {
    let pages = Pages::load(None).unwrap();
    let stylesheet = format!(
        r#"<link rel="stylesheet" href="{}">"#,
        escaped("/oauth/assets/style.css")
    );
    for (name, html) in every_page(&pages) {
        assert!(html.starts_with("<!DOCTYPE html>"), "{name}");
        for part in [
            r#"<html lang="en">"#,
            r#"<meta charset="utf-8">"#,
            r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#,
            "<title>",
            "<main>",
            "</main>",
            "<h1>",
            &stylesheet,
        ] {
            assert!(html.contains(part), "{name} lacks {part}:\n{html}");
        }
    }
}

#[test]
fn the_login_form_has_labelled_fields_the_hint_and_the_error() {
    let pages = Pages::load(None).unwrap();
    let html = pages.login(&fixtures::login(true)).unwrap();
    for part in [
        "<title>Sign in to Example App</title>",
        &format!(
            r#"<form method="post" action="{}">"#,
            escaped("/oauth/authorize")
        ),
        r#"<label for="email">"#,
        r#"<input id="email" name="email" type="email" autocomplete="username" required value="ada@example.com">"#,
        r#"<label for="password">"#,
        r#"<input id="password" name="password" type="password" autocomplete="current-password" required autofocus>"#,
        r#"<button type="submit" class="primary">Sign in</button>"#,
        r#"<p class="alert" role="alert">The e-mail address or password is not right.</p>"#,
        r#"<input type="hidden" name="csrf_token" value="fixture-csrf">"#,
        r#"<input type="hidden" name="request" value="fixture-request">"#,
    ] {
        assert!(html.contains(part), "login lacks {part}:\n{html}");
    }

    let html = pages.login(&fixtures::login(false)).unwrap();
    assert!(!html.contains("role=\"alert\""), "{html}");
    assert!(!html.contains("value=\"none\""), "{html}");
    assert!(
        html.contains(r#"autocomplete="username" required autofocus>"#),
        "{html}"
    );
}

#[test]
fn the_consent_form_lists_the_scopes_and_allows_or_denies() {
    let pages = Pages::load(None).unwrap();
    let html = pages.consent(&fixtures::consent(true)).unwrap();
    for part in [
        r#"<span class="client">Example App</span> wants to:"#,
        r#"<li>See your name<span class="scope-name">profile</span></li>"#,
        r#"<li>Read your transcriptions<span class="scope-name">transcriptions:read</span></li>"#,
        "Signed in as <strong>ada@example.com</strong>",
        r#"<button type="submit" name="decision" value="allow" class="primary">Allow</button>"#,
        r#"<button type="submit" name="decision" value="deny" class="secondary">Deny</button>"#,
        r#"<input type="hidden" name="csrf_token" value="fixture-csrf">"#,
    ] {
        assert!(html.contains(part), "consent lacks {part}:\n{html}");
    }
    // A scope without a description shows its name once.
    let mut page = fixtures::consent(true);
    page.scopes = vec![ScopeLine {
        name: "openid".to_owned(),
        description: String::new(),
    }];
    let html = pages.consent(&page).unwrap();
    assert!(html.contains("<li>openid</li>"), "{html}");
}

#[test]
fn logout_asks_with_one_button_and_names_the_client_when_known() {
    let pages = Pages::load(None).unwrap();
    let html = pages.logout(&fixtures::logout(true)).unwrap();
    assert!(
        html.contains(r#"<h1>Sign out of <span class="client">Example App</span>?</h1>"#),
        "{html}"
    );
    assert_eq!(html.matches("<button").count(), 1, "{html}");
    assert!(html.contains(">Sign out</button>"), "{html}");
    let html = pages.logout(&fixtures::logout(false)).unwrap();
    assert!(html.contains("<h1>Sign out?</h1>"), "{html}");
}

#[test]
fn every_value_is_html_escaped() {
    let pages = Pages::load(None).unwrap();
    let evil = hostile().to_owned();
    let hidden = vec![HiddenField {
        name: "request".to_owned(),
        value: evil.clone(),
    }];
    let login = pages
        .login(&LoginPage {
            client_name: evil.clone(),
            login_hint: Some(evil.clone()),
            error: Some(evil.clone()),
            hidden: hidden.clone(),
            ..fixtures::login(true)
        })
        .unwrap();
    let consent = pages
        .consent(&ConsentPage {
            client_name: evil.clone(),
            user_email: evil.clone(),
            scopes: vec![ScopeLine {
                name: evil.clone(),
                description: evil.clone(),
            }],
            hidden: hidden.clone(),
            ..fixtures::consent(true)
        })
        .unwrap();
    let error = pages
        .error(&ErrorPage {
            title: evil.clone(),
            message: evil.clone(),
            ..fixtures::error()
        })
        .unwrap();
    let logout = pages
        .logout(&LogoutPage {
            client_name: Some(evil.clone()),
            hidden,
            ..fixtures::logout(true)
        })
        .unwrap();
    for (name, html, times) in [
        ("login", login, 5),
        ("consent", consent, 6),
        ("error", error, 3),
        ("logout", logout, 2),
    ] {
        assert!(!html.contains(&evil), "{name}: raw value in\n{html}");
        assert!(!html.contains("<script"), "{name}:\n{html}");
        assert_eq!(
            html.matches(&escaped(&evil)).count(),
            times,
            "{name}: every occurrence escaped:\n{html}"
        );
    }
}

#[test]
fn no_page_has_a_script_or_an_absolute_url_but_the_given_ones() {
    let pages = Pages::load(None).unwrap();
    for (name, html) in every_page(&pages) {
        assert!(!html.to_lowercase().contains("<script"), "{name}");
        for url in ["http:", "https:", "//", "&#x2f;&#x2f;"] {
            assert!(!html.contains(url), "{name} contains {url}:\n{html}");
        }
    }
    // Absolute values given by the caller are the only ones.
    let stylesheet = "https://auth.example/tenant/oauth/assets/style.css";
    let action = "https://auth.example/tenant/oauth/authorize";
    let html = pages
        .login(&LoginPage {
            base: PageBase {
                stylesheet: stylesheet.to_owned(),
            },
            action: action.to_owned(),
            ..fixtures::login(true)
        })
        .unwrap();
    let rest = html
        .replace(&escaped(stylesheet), "")
        .replace(&escaped(action), "");
    assert_ne!(rest, html);
    assert!(
        !rest.contains("https:") && !rest.contains("http:"),
        "{rest}"
    );
    assert!(
        !pages.stylesheet().contains("url("),
        "the stylesheet loads nothing"
    );
    assert!(!pages.stylesheet().contains("@import"));
}

#[test]
fn pages_are_sent_with_the_security_headers_and_no_form_action() {
    let response = page_response(StatusCode::FORBIDDEN, "<p>x</p>".to_owned());
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let headers = response.headers();
    let get = |name: header::HeaderName| headers.get(name).unwrap().to_str().unwrap();
    assert_eq!(get(header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(get(header::CACHE_CONTROL), "no-store");
    let csp = get(header::CONTENT_SECURITY_POLICY);
    assert_eq!(
        csp,
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    assert!(!csp.contains("form-action"), "{csp}");
    assert_eq!(get(header::X_FRAME_OPTIONS), "DENY");
    assert_eq!(get(header::REFERRER_POLICY), "no-referrer");
    assert_eq!(get(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
}

#[test]
fn an_operator_file_replaces_the_built_in_one_of_its_name_only() {
    let dir = operator_dir(&[
        (
            "login.html",
            r#"{% extends "base.html" %}{% block title %}Custom{% endblock %}{% block content %}<p>Welcome to {{ client_name }}</p><form method="post" action="{{ action }}"></form>{% endblock %}"#,
        ),
        ("style.css", "body { color: #000 }\n"),
    ]);
    let pages = Pages::load(Some(&dir)).unwrap();
    let login = pages.login(&fixtures::login(true)).unwrap();
    assert!(login.contains("<p>Welcome to Example App</p>"), "{login}");
    assert!(login.contains(r#"<html lang="en">"#), "the built-in base");
    let consent = pages.consent(&fixtures::consent(true)).unwrap();
    assert!(consent.contains("wants to:"), "the built-in consent page");
    assert_eq!(pages.stylesheet(), "body { color: #000 }\n");
    assert_eq!(Pages::load(None).unwrap().stylesheet(), BUILT_IN_STYLESHEET);
}

#[test]
fn a_broken_or_misspelled_operator_template_fails_at_load_naming_its_file() {
    for (file, text, says) in [
        (
            "consent.html",
            "{% extends \"base.html\" %}\n{% block content %}{% if %}{% endblock %}",
            ":2: syntax error",
        ),
        (
            "login.html",
            "{% extends \"base.html\" %}\n{% block content %}\n{{ client_nmae }}{% endblock %}",
            ":3: undefined value",
        ),
        (
            "base.html",
            "<html>{{ base.styleshet }}</html>",
            ":1: undefined value",
        ),
        // Fails only with the empty fixture (no hint): rendered with both at load.
        (
            "login.html",
            "{% extends \"base.html\" %}{% block content %}{{ login_hint.upper() }}{% endblock %}",
            ":1: ",
        ),
    ] {
        let dir = operator_dir(&[(file, text)]);
        let err = Pages::load(Some(&dir)).expect_err(file);
        let line = err.to_string();
        let path = dir.join(file).display().to_string();
        assert!(line.starts_with(&format!("{path}:")), "{line}");
        assert!(line.contains(says), "{line} lacks {says}");
        assert!(!line.contains('\n'), "{line}");
    }
}

#[test]
fn a_missing_directory_or_unreadable_stylesheet_fails_at_load() {
    let missing = std::env::temp_dir().join(format!("pages-missing-{}", uuid::Uuid::new_v4()));
    let line = Pages::load(Some(&missing)).unwrap_err().to_string();
    assert!(
        line.starts_with(&format!("templates directory {}: ", missing.display())),
        "{line}"
    );
    let dir = operator_dir(&[]);
    std::fs::write(dir.join("style.css"), [0xff, 0xfe, 0x00]).unwrap();
    let line = Pages::load(Some(&dir)).unwrap_err().to_string();
    assert!(
        line.starts_with(&format!("{}: ", dir.join("style.css").display())),
        "{line}"
    );
}

/// Writes every page, rendered with the fixtures, to `target/pages-preview/` next to a copy
/// of `style.css`, to look at in a browser (`file://…/login.html`); asserts nothing else.
#[test]
fn write_previews() {
    let pages = Pages::load(None).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pages-preview");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(STYLESHEET_FILE), pages.stylesheet()).unwrap();
    let base = || PageBase {
        stylesheet: STYLESHEET_FILE.to_owned(),
    };
    let long = "Transcriptions for Teams — the very long application name".to_owned();
    let previews = [
        (
            "login",
            pages.login(&LoginPage {
                base: base(),
                ..fixtures::login(false)
            }),
        ),
        (
            "login-error",
            pages.login(&LoginPage {
                base: base(),
                ..fixtures::login(true)
            }),
        ),
        (
            "consent",
            pages.consent(&ConsentPage {
                base: base(),
                client_name: long,
                ..fixtures::consent(true)
            }),
        ),
        (
            "error",
            pages.error(&ErrorPage {
                base: base(),
                ..fixtures::error()
            }),
        ),
        (
            "logout",
            pages.logout(&LogoutPage {
                base: base(),
                ..fixtures::logout(true)
            }),
        ),
        (
            "signed_out",
            pages.signed_out(&SignedOutPage { base: base() }),
        ),
    ];
    for (name, html) in previews {
        std::fs::write(dir.join(format!("{name}.html")), html.unwrap()).unwrap();
    }
}
