//! The sign-in pages: login, consent, error, logout confirmation and "signed out", rendered
//! from minijinja templates, and the one stylesheet they link.
//!
//! Each file in `templates/` is built in; an operator replaces any of them by putting a file of
//! the same name in `--templates-dir` (docs/decisions.md, "Pages are minijinja templates,
//! replaceable from a directory"). [`Pages::load`] compiles every template and renders each page
//! with fixture contexts, under [`UndefinedBehavior::SemiStrict`], so a broken or misspelled
//! template stops the server at start instead of breaking a sign-in.
//!
//! Names end in `.html`, so every value is HTML-escaped (minijinja escapes `<>&"'/`). The pages
//! carry no script and no external resource; [`page_response`] sends them with the headers of
//! docs/plans/sign-in.md §5.8.

use std::path::{Path, PathBuf};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

/// The template files (and the stylesheet) an operator may replace, with their built-in text.
const BUILT_IN: [(&str, &str); 6] = [
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("consent.html", include_str!("templates/consent.html")),
    ("error.html", include_str!("templates/error.html")),
    ("logout.html", include_str!("templates/logout.html")),
    ("signed_out.html", include_str!("templates/signed_out.html")),
];

/// The stylesheet's file name in the templates directory.
pub const STYLESHEET_FILE: &str = "style.css";

const BUILT_IN_STYLESHEET: &str = include_str!("templates/style.css");

/// The `Content-Security-Policy` of every page. No `form-action`: Chromium applies it to the
/// redirect after a form's POST, which would block the 303 to the client's `redirect_uri`
/// (docs/plans/sign-in.md §3.4).
pub const PAGE_CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The compiled pages and the stylesheet; cheap to share in an `Arc`.
pub struct Pages {
    env: Environment<'static>,
    /// Where the operator's files are, to name them in errors.
    dir: Option<PathBuf>,
    stylesheet: String,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages").field("dir", &self.dir).finish()
    }
}

/// Why a page could not be loaded or rendered; one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    /// `--templates-dir` is not a readable directory.
    #[error("templates directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    /// The operator's stylesheet cannot be read (or is not UTF-8).
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A template does not compile or render: `file` is the operator's path or
    /// `built-in NAME`, `line` its line (0 when unknown).
    #[error("{file}:{line}: {detail}")]
    Template {
        file: String,
        line: usize,
        detail: String,
    },
}

/// The login form (`login.html`). Its POST carries `email`, `password` and the hidden fields.
#[derive(Debug, Clone, Serialize)]
pub struct LoginPage {
    pub base: PageBase,
    /// The client's registered name, as the user is told who asks.
    pub client_name: String,
    /// OIDC Core §3.1.2.1 `login_hint`, prefilled into the e-mail field.
    pub login_hint: Option<String>,
    /// Why the previous attempt failed, shown in a `role="alert"` element.
    pub error: Option<String>,
    /// Where the form posts (the authorization endpoint's URL or path).
    pub action: String,
    /// The CSRF token and the authorization request, posted back unchanged.
    pub hidden: Vec<HiddenField>,
}

/// The consent form (`consent.html`): "CLIENT wants to:" the scopes, Allow or Deny, posted
/// as `decision=allow` or `decision=deny` with the hidden fields.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentPage {
    pub base: PageBase,
    pub client_name: String,
    /// The signed-in user's e-mail ("Signed in as …").
    pub user_email: String,
    /// The requested scopes the user has not granted yet.
    pub scopes: Vec<ScopeLine>,
    pub action: String,
    pub hidden: Vec<HiddenField>,
}

/// One scope on the consent page: its description, with the name as secondary text.
#[derive(Debug, Clone, Serialize)]
pub struct ScopeLine {
    pub name: String,
    pub description: String,
}

/// A page that ends the flow with an explanation (`error.html`), e.g. an unknown client or
/// `redirect_uri` (RFC 6749 §4.1.2.1: no redirect then) or an expired form.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorPage {
    pub base: PageBase,
    pub title: String,
    pub message: String,
}

/// The "Sign out?" confirmation of the end-session endpoint (`logout.html`), shown when the
/// request does not prove who asks (OIDC RP-Initiated Logout §2); one "Sign out" button.
#[derive(Debug, Clone, Serialize)]
pub struct LogoutPage {
    pub base: PageBase,
    /// The client that asks, when known.
    pub client_name: Option<String>,
    pub action: String,
    pub hidden: Vec<HiddenField>,
}

/// "You are signed out" (`signed_out.html`), when no `post_logout_redirect_uri` is used.
#[derive(Debug, Clone, Serialize)]
pub struct SignedOutPage {
    pub base: PageBase,
}

/// What every page receives.
#[derive(Debug, Clone, Serialize)]
pub struct PageBase {
    /// URL of `style.css` (`{issuer}/oauth/assets/style.css` or its path).
    pub stylesheet: String,
}

/// An `<input type="hidden">` of a form.
#[derive(Debug, Clone, Serialize)]
pub struct HiddenField {
    pub name: String,
    pub value: String,
}

impl Pages {
    /// Built-in templates, overridden per file by `templates_dir/<name>` when that file exists.
    /// Compiles every template and renders each once with a fixture context: a broken or
    /// misspelled operator template fails here.
    pub fn load(templates_dir: Option<&Path>) -> Result<Pages, PagesError> {
        let dir = templates_dir.map(Path::to_path_buf);
        if let Some(dir) = &dir {
            let meta = std::fs::metadata(dir).map_err(|source| PagesError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
            if !meta.is_dir() {
                return Err(PagesError::Dir {
                    path: dir.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotADirectory,
                        "not a directory",
                    ),
                });
            }
        }
        let stylesheet = match operator_file(dir.as_deref(), STYLESHEET_FILE) {
            Some(path) => std::fs::read_to_string(&path).map_err(|source| PagesError::Read {
                path: path.display().to_string(),
                source,
            })?,
            None => BUILT_IN_STYLESHEET.to_owned(),
        };
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        // Block tags leave no blank lines behind; the pages end with a newline. With the
        // default delimiters building cannot fail.
        if let Ok(syntax) = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        // One loader, no `add_template`: added templates would shadow the operator's files.
        let loader_dir = dir.clone();
        env.set_loader(move |name| {
            if let Some(path) = operator_file(loader_dir.as_deref(), name) {
                return std::fs::read_to_string(&path).map(Some).map_err(|err| {
                    minijinja::Error::new(
                        ErrorKind::TemplateNotFound,
                        format!("cannot read {}: {err}", path.display()),
                    )
                });
            }
            Ok(BUILT_IN
                .iter()
                .find(|(built_in, _)| *built_in == name)
                .map(|(_, text)| (*text).to_owned()))
        });
        let pages = Pages {
            env,
            dir,
            stylesheet,
        };
        pages.check()?;
        Ok(pages)
    }

    /// Compiles every template and renders every page with a full and an empty fixture.
    fn check(&self) -> Result<(), PagesError> {
        for (name, _) in BUILT_IN {
            self.env
                .get_template(name)
                .map_err(|err| self.failure(name, &err))?;
        }
        for full in [true, false] {
            self.login(&fixtures::login(full))?;
            self.consent(&fixtures::consent(full))?;
            self.error(&fixtures::error())?;
            self.logout(&fixtures::logout(full))?;
            self.signed_out(&fixtures::signed_out())?;
        }
        Ok(())
    }

    /// The login form (`login.html`).
    pub fn login(&self, page: &LoginPage) -> Result<String, PagesError> {
        self.render("login.html", page)
    }

    /// The consent form (`consent.html`).
    pub fn consent(&self, page: &ConsentPage) -> Result<String, PagesError> {
        self.render("consent.html", page)
    }

    /// An error page (`error.html`).
    pub fn error(&self, page: &ErrorPage) -> Result<String, PagesError> {
        self.render("error.html", page)
    }

    /// The "Sign out of …?" confirmation (`logout.html`).
    pub fn logout(&self, page: &LogoutPage) -> Result<String, PagesError> {
        self.render("logout.html", page)
    }

    /// "You are signed out" (`signed_out.html`).
    pub fn signed_out(&self, page: &SignedOutPage) -> Result<String, PagesError> {
        self.render("signed_out.html", page)
    }

    /// `style.css`: the operator's or the built-in one.
    pub fn stylesheet(&self) -> &str {
        &self.stylesheet
    }

    fn render(&self, name: &str, context: &impl Serialize) -> Result<String, PagesError> {
        self.env
            .get_template(name)
            .and_then(|template| template.render(Serde(context)))
            .map_err(|err| self.failure(name, &err))
    }

    /// The error of rendering `page`, naming the file it happened in (a template it extends
    /// or includes may be the culprit): the operator's path or `built-in NAME`.
    fn failure(&self, page: &str, err: &minijinja::Error) -> PagesError {
        let name = err.name().unwrap_or(page);
        let file = match operator_file(self.dir.as_deref(), name) {
            Some(path) => path.display().to_string(),
            None => format!("built-in {name}"),
        };
        let detail = match err.detail() {
            Some(detail) => format!("{}: {detail}", err.kind()),
            None => err.kind().to_string(),
        };
        PagesError::Template {
            file,
            line: err.line().unwrap_or(0),
            detail: detail.replace(['\n', '\r'], " "),
        }
    }
}

/// `dir/name` when the operator put a file of that name there. Only plain file names are
/// looked up (no path separators, no leading dot).
fn operator_file(dir: Option<&Path>, name: &str) -> Option<PathBuf> {
    let plain = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']);
    let path = dir.filter(|_| plain)?.join(name);
    path.is_file().then_some(path)
}

/// The HTML response with the security headers of docs/plans/sign-in.md §5.8:
/// `text/html; charset=utf-8`, `Cache-Control: no-store`, [`PAGE_CSP`] (no `form-action`),
/// `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, `X-Content-Type-Options: nosniff`.
pub fn page_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_CSP),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        html,
    )
        .into_response()
}

/// The contexts [`Pages::load`] renders every page with: `full` sets every optional value and
/// fills every list, otherwise they are `None` and empty.
mod fixtures {
    use super::*;

    fn base() -> PageBase {
        PageBase {
            stylesheet: "/oauth/assets/style.css".to_owned(),
        }
    }

    fn hidden() -> Vec<HiddenField> {
        vec![
            HiddenField {
                name: "csrf_token".to_owned(),
                value: "fixture-csrf".to_owned(),
            },
            HiddenField {
                name: "request".to_owned(),
                value: "fixture-request".to_owned(),
            },
        ]
    }

    pub(super) fn login(full: bool) -> LoginPage {
        LoginPage {
            base: base(),
            client_name: "Example App".to_owned(),
            login_hint: full.then(|| "ada@example.com".to_owned()),
            error: full.then(|| "The e-mail address or password is not right.".to_owned()),
            action: "/oauth/authorize".to_owned(),
            hidden: if full { hidden() } else { Vec::new() },
        }
    }

    pub(super) fn consent(full: bool) -> ConsentPage {
        ConsentPage {
            base: base(),
            client_name: "Example App".to_owned(),
            user_email: "ada@example.com".to_owned(),
            scopes: if full {
                vec![
                    ScopeLine {
                        name: "profile".to_owned(),
                        description: "See your name".to_owned(),
                    },
                    ScopeLine {
                        name: "transcriptions:read".to_owned(),
                        description: "Read your transcriptions".to_owned(),
                    },
                ]
            } else {
                Vec::new()
            },
            action: "/oauth/authorize".to_owned(),
            hidden: if full { hidden() } else { Vec::new() },
        }
    }

    pub(super) fn error() -> ErrorPage {
        ErrorPage {
            base: base(),
            title: "This sign-in link is not valid".to_owned(),
            message: "The application sent an unknown client.".to_owned(),
        }
    }

    pub(super) fn logout(full: bool) -> LogoutPage {
        LogoutPage {
            base: base(),
            client_name: full.then(|| "Example App".to_owned()),
            action: "/oauth/logout".to_owned(),
            hidden: if full { hidden() } else { Vec::new() },
        }
    }

    pub(super) fn signed_out() -> SignedOutPage {
        SignedOutPage { base: base() }
    }
}

#[cfg(test)]
mod tests;
