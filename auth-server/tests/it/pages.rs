//! The sign-in pages' layer as an operator meets it: the stylesheet route, `--templates-dir`
//! replacing files, and a broken operator template stopping the server at start with one line
//! naming the file.

use std::path::{Path, PathBuf};

use auth_server::pages::Pages;
use auth_server::{Application, StartError};
use reqwest::StatusCode;
use test_support::cli::{StartFailure, assert_start_failures};

use crate::helpers::{TestApp, TestDb};

/// `dir/templates` holding `files`.
fn templates_dir(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    for (name, text) in files {
        std::fs::write(templates.join(name), text).unwrap();
    }
    templates
}

async fn get_stylesheet(app: &TestApp, path: &str) -> (reqwest::header::HeaderMap, String) {
    let response = app.http.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let headers = response.headers().clone();
    (headers, response.text().await.unwrap())
}

#[tokio::test]
async fn the_stylesheet_is_served_with_its_headers() {
    let app = TestApp::sqlite().await;
    let (headers, body) = get_stylesheet(&app, "/oauth/assets/style.css").await;
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");
    assert_eq!(headers["cache-control"], "public, max-age=3600");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(body, Pages::load(None).unwrap().stylesheet());
    assert!(body.contains(":focus-visible"), "{body}");
}

/// An issuer with a path links the stylesheet under that path, so it is served there too.
#[tokio::test]
async fn an_issuer_with_a_path_serves_the_stylesheet_under_it() {
    let app = TestApp::spawn_with(TestDb::sqlite(), |config| {
        config.issuer = Some("http://auth.example.test/tenant".to_owned());
    })
    .await;
    let (_, body) = get_stylesheet(&app, "/tenant/oauth/assets/style.css").await;
    assert_eq!(body, Pages::load(None).unwrap().stylesheet());
}

#[tokio::test]
async fn an_operator_stylesheet_replaces_the_built_in_one() {
    let db = TestDb::sqlite();
    let css = "main { max-width: 40rem }\n";
    let dir = templates_dir(&db.dir, &[("style.css", css)]);
    let app = TestApp::spawn_with(db, |config| config.templates_dir = Some(dir)).await;
    let (headers, body) = get_stylesheet(&app, "/oauth/assets/style.css").await;
    assert_eq!(body, css);
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");
}

/// Templates that do not compile, or name a variable no page receives, in the operator's
/// directory: the server does not start, and says which file.
fn broken_templates() -> [(&'static str, &'static str, &'static str, &'static str); 3] {
    [
        (
            "a syntax error",
            "login.html",
            "{% extends \"base.html\" %}\n{% block content %}{% for %}{% endblock %}\n",
            ":2: syntax error",
        ),
        (
            "an unknown variable",
            "consent.html",
            "{% extends \"base.html\" %}\n{% block content %}\n<p>{{ user_mail }}</p>\n{% endblock %}\n",
            ":3: undefined value",
        ),
        (
            "an unknown variable in the layout",
            "base.html",
            "<html><title>{{ title }}</title>{% block content %}{% endblock %}</html>\n",
            ":1: undefined value",
        ),
    ]
}

#[tokio::test]
async fn a_broken_operator_template_stops_the_build() {
    for (case, file, text, says) in broken_templates() {
        let db = TestDb::sqlite();
        let dir = templates_dir(&db.dir, &[(file, text)]);
        let mut config = TestApp::config(&db);
        config.templates_dir = Some(dir.clone());
        let err = match Application::build(config).await {
            Ok(_) => panic!("{case}: the server started"),
            Err(err) => err,
        };
        assert!(matches!(err, StartError::Pages(_)), "{case}: {err:?}");
        let line = err.to_string();
        let path = dir.join(file).display().to_string();
        assert!(
            line.starts_with(&format!("pages: {path}:")),
            "{case}: {line}"
        );
        assert!(line.contains(says), "{case}: {line} lacks {says}");
    }
}

/// The database URL names a path under a file, which fails to open after the pages are
/// loaded: a server that did not check them fails there (naming the database) instead of
/// running on.
#[test]
fn serve_with_a_broken_operator_template_exits_with_one_line_naming_the_file() {
    let db = TestDb::sqlite();
    let a_file = db.dir.join("a-file");
    std::fs::write(&a_file, "not a directory").unwrap();
    let unopenable = format!("sqlite:{}/auth.db", a_file.display());
    let mut cases = Vec::new();
    for (i, (case, file, text, says)) in broken_templates().into_iter().enumerate() {
        let dir = templates_dir(&db.dir.join(i.to_string()), &[(file, text)]);
        let path = dir.join(file).display().to_string();
        cases.push(
            StartFailure::new(case, &["serve", "--bind", "127.0.0.1:0"], &[&path, says])
                .env("TEMPLATES_DIR", dir.display().to_string()),
        );
    }
    let missing = db.dir.join("no-such-dir").display().to_string();
    cases.push(StartFailure::new(
        "a missing directory",
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--templates-dir",
            &missing,
        ],
        &[&format!("templates directory {missing}")],
    ));
    let cases: Vec<StartFailure> = cases
        .into_iter()
        .map(|case| {
            case.env("DATABASE_URL", unopenable.as_str())
                .env("AUTH_SECRETS", db.auth_secrets())
        })
        .collect();
    assert_start_failures(
        Path::new(env!("CARGO_BIN_EXE_auth-server")),
        &cases,
        "no password here",
    );
}
