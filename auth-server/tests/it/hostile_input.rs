//! Hostile input in every parameter of every endpoint, one parameter at a time: NUL, C0 and C1
//! controls, invalid UTF-8, quotes and backslashes, 4 KB and 64 KB values. Each answer is the
//! endpoint's ordinary contract answer for a wrong value, or `invalid_request` for text that is
//! not UTF-8 or a body over 16 KiB (never a 5xx), no ERROR is logged, and
//! every `error_description` keeps to RFC 6749 §5.2's characters and never repeats the input.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use auth_server::model::GrantType::{ClientCredentials, Password, RefreshToken};
use reqwest::StatusCode;
use serde_json::Value;
use tracing_subscriber::layer::{Context, SubscriberExt};

use crate::helpers::TestApp;

/// Values tried in each parameter (form-encoded as sent on the wire).
fn hostile_values() -> Vec<String> {
    let mut values: Vec<String> = [
        "%00",
        "a%00b",
        "%01",
        "%1B%5B31m",
        "%0D%0AX-Injected:%201",
        "%7F",
        "%C2%85",
        "%FF",
        "%C3",
        "%ED%A0%80",
        "a%22b%5Cc",
        "%E2%80%AE",
    ]
    .iter()
    .map(|v| (*v).to_owned())
    .collect();
    values.push("a".repeat(4 * 1024));
    values.push("%00".repeat(1400));
    values.push("a".repeat(64 * 1024));
    values
}

/// The values above that are not UTF-8: the whole request is `invalid_request` (RFC 6749 §3.2).
const NOT_UTF8: [&str; 3] = ["%FF", "%C3", "%ED%A0%80"];

/// Counts ERROR events seen by the thread's subscriber.
struct ErrorCounter(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// One request shape: the endpoint and a valid form, whose parameters are replaced in turn.
struct Scenario {
    path: &'static str,
    form: Vec<(&'static str, String)>,
    /// Status and `error` code for a wrong value of each parameter (`None`: 200).
    expected: fn(&str) -> Option<(StatusCode, &'static str)>,
}

fn encode(form: &[(&str, String)], replace: &str, value: &str) -> String {
    form.iter()
        .map(|(name, v)| {
            if *name == replace {
                format!("{name}={value}")
            } else {
                let v: String = url_encode(v);
                format!("{name}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn url_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn scenarios(app: &TestApp) -> Vec<Scenario> {
    let (id, secret) = app
        .create_client(&["read"], &[ClientCredentials, Password, RefreshToken])
        .await;
    app.create_user("hostile@example.com", "correct horse battery", &["read"])
        .await;
    let login = app
        .token(
            &[
                ("grant_type", "password"),
                ("username", "hostile@example.com"),
                ("password", "correct horse battery"),
            ],
            Some((&id, &secret)),
        )
        .await;
    assert_eq!(login.status(), StatusCode::OK);
    let login: Value = login.json().await.unwrap();
    let access = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let client = |form: &[(&'static str, &str)]| {
        let mut all: Vec<(&'static str, String)> = vec![("client_id", id.clone())];
        all.push(("client_secret", secret.clone()));
        all.extend(form.iter().map(|(k, v)| (*k, (*v).to_owned())));
        all
    };
    const CLIENT: Option<(StatusCode, &str)> = Some((StatusCode::UNAUTHORIZED, "invalid_client"));
    const BAD_REQUEST: StatusCode = StatusCode::BAD_REQUEST;
    vec![
        Scenario {
            path: "/oauth/token",
            form: client(&[("grant_type", "client_credentials"), ("scope", "read")]),
            expected: |param| match param {
                "client_id" | "client_secret" => CLIENT,
                "grant_type" => Some((BAD_REQUEST, "unsupported_grant_type")),
                _ => Some((BAD_REQUEST, "invalid_scope")),
            },
        },
        Scenario {
            path: "/oauth/token",
            form: client(&[
                ("grant_type", "password"),
                ("username", "hostile@example.com"),
                ("password", "correct horse battery"),
                ("scope", "read"),
            ]),
            expected: |param| match param {
                "client_id" | "client_secret" => CLIENT,
                "grant_type" => Some((BAD_REQUEST, "unsupported_grant_type")),
                "scope" => Some((BAD_REQUEST, "invalid_scope")),
                _ => Some((BAD_REQUEST, "invalid_grant")),
            },
        },
        Scenario {
            path: "/oauth/token",
            form: client(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("scope", "read"),
            ]),
            expected: |param| match param {
                "client_id" | "client_secret" => CLIENT,
                "grant_type" => Some((BAD_REQUEST, "unsupported_grant_type")),
                "scope" => Some((BAD_REQUEST, "invalid_scope")),
                _ => Some((BAD_REQUEST, "invalid_grant")),
            },
        },
        Scenario {
            path: "/oauth/introspect",
            form: client(&[("token", &access), ("token_type_hint", "access_token")]),
            expected: |param| match param {
                "client_id" | "client_secret" => CLIENT,
                _ => None,
            },
        },
        Scenario {
            path: "/oauth/revoke",
            // A token of another issuer: revoking it is a no-op, so the table can run repeatedly.
            form: client(&[("token", "not-ours"), ("token_type_hint", "refresh_token")]),
            expected: |param| match param {
                "client_id" | "client_secret" => CLIENT,
                _ => None,
            },
        },
    ]
}

async fn every_parameter_of_every_endpoint_answers_by_contract(app: &TestApp) {
    let errors = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(ErrorCounter(errors.clone()));
    // The test runtime is single-threaded: the server's tasks run on this thread and log here.
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut tried = 0;
    for scenario in scenarios(app).await {
        for (param, _) in &scenario.form {
            for value in hostile_values() {
                let body = encode(&scenario.form, param, &value);
                let response = app
                    .http
                    .post(app.url(scenario.path))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let text = response.text().await.unwrap();
                let case = format!("{} {param}={:.40}", scenario.path, value);
                assert!(!status.is_server_error(), "{case}: {status} {text}");
                let expected = if value.len() > 16 * 1024 {
                    Some((StatusCode::PAYLOAD_TOO_LARGE, "invalid_request"))
                } else if NOT_UTF8.contains(&value.as_str()) {
                    Some((StatusCode::BAD_REQUEST, "invalid_request"))
                } else {
                    (scenario.expected)(param)
                };
                match expected {
                    Some((expected_status, code)) => {
                        assert_eq!(status, expected_status, "{case}: {text}");
                        let body: Value = serde_json::from_str(&text).unwrap();
                        assert_eq!(body["error"], code, "{case}: {text}");
                        let description = body["error_description"].as_str().unwrap();
                        assert!(
                            description.chars().all(|c| matches!(c,
                                '\u{20}'..='\u{21}' | '\u{23}'..='\u{5B}' | '\u{5D}'..='\u{7E}')),
                            "{case}: {description:?}"
                        );
                        assert!(!description.contains("hostile"), "{case}: {description}");
                    }
                    None => {
                        assert_eq!(status, StatusCode::OK, "{case}: {text}");
                        if scenario.path == "/oauth/introspect" && *param == "token" {
                            assert_eq!(text, r#"{"active":false}"#, "{case}");
                        }
                    }
                }
                tried += 1;
            }
        }
    }
    assert!(tried > 200, "{tried}");
    assert_eq!(errors.load(Ordering::SeqCst), 0, "ERROR events were logged");
}

async fn unknown_and_repeated_parameter_names_are_never_echoed(app: &TestApp) {
    for body in [
        "%22x=1&%22x=2",
        "a%5Cb=1&a%5Cb=2",
        "%FF=1&%FF=2",
        "grant_type=a%22b%5Cc",
        "grant_type=client_credentials&grant_type=client_credentials",
        "x%00=1&x%00=1",
    ] {
        let response = app
            .http
            .post(app.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let body_json: Value = response.json().await.unwrap();
        let description = body_json["error_description"].as_str().unwrap();
        assert!(
            !description.contains('"') && !description.contains('\\'),
            "{body}: {description}"
        );
        assert!(
            [
                "a parameter is repeated",
                "parameter `grant_type` is repeated",
                "this grant type is not supported",
            ]
            .contains(&description),
            "{body}: {description}"
        );
    }
}

async fn hostile_basic_credentials_are_invalid_client(app: &TestApp) {
    use base64::Engine;
    let encode = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
    let long = "a".repeat(4096);
    for raw in [
        &b"a\0b:secret"[..],
        b"%00:secret",
        b"id:se%00cret",
        b"\xff:secret",
        b"id:\x1b[31m",
        long.as_bytes(),
    ] {
        let response = app
            .http
            .post(app.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {}", encode(raw)))
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{}",
            String::from_utf8_lossy(raw)
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
    }
}

/// The sign-in endpoints, one parameter at a time with every hostile value: the authorization
/// request (GET and POST), the login, consent and logout forms, userinfo and the code exchange.
/// Each answer is a 2xx/3xx/4xx of the contract — never a 5xx — and no ERROR is logged; the
/// authorization endpoint never redirects with a value it was sent other than `state`.
async fn sign_in_endpoints_answer_hostile_input_by_contract(app: &TestApp) {
    use crate::signin::{Attempt, Browser, REDIRECT, sign_in_client, user};
    let errors = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(ErrorCounter(errors.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);
    user(app).await;
    let client = sign_in_client(app, |_| {}).await;
    let attempt = Attempt::new();
    let challenge = attempt.challenge();
    let authorize: Vec<(&str, String)> = vec![
        ("response_type", "code".into()),
        ("client_id", client.id.clone()),
        ("redirect_uri", REDIRECT.into()),
        ("scope", "openid".into()),
        ("state", "s".into()),
        ("nonce", "n".into()),
        ("code_challenge", challenge.clone()),
        ("code_challenge_method", "S256".into()),
        ("prompt", "login".into()),
        ("max_age", "60".into()),
        ("login_hint", "ada@example.com".into()),
        ("id_token_hint", "x.y.z".into()),
    ];
    let browser = Browser::new();
    let page = browser
        .get(&attempt.url(app, &client.id, "openid", &[]))
        .await;
    let fields = page.inputs();
    let cookie = browser
        .cookies
        .lock()
        .unwrap()
        .iter()
        .map(|(name, (value, _))| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("; ");
    let login: Vec<(&str, String)> = vec![
        ("request", fields["request"].clone()),
        ("csrf_token", fields["csrf_token"].clone()),
        ("email", "ada@example.com".into()),
        ("password", "wrong password!".into()),
    ];
    let consent: Vec<(&str, String)> = vec![
        ("request", fields["request"].clone()),
        ("csrf_token", "x".into()),
        ("decision", "allow".into()),
    ];
    let logout: Vec<(&str, String)> = vec![
        ("id_token_hint", "x.y.z".into()),
        ("client_id", client.id.clone()),
        (
            "post_logout_redirect_uri",
            "https://app.example/signed-out".into(),
        ),
        ("state", "s".into()),
    ];
    let exchange: Vec<(&str, String)> = vec![
        ("grant_type", "authorization_code".into()),
        ("code", "c".repeat(43)),
        ("redirect_uri", REDIRECT.into()),
        ("code_verifier", attempt.verifier.clone()),
        ("client_id", client.id.clone()),
    ];
    // Redirects are read, not followed (they lead to the client's host).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut tried = 0;
    for (method, path, form) in [
        ("GET", "/oauth/authorize", &authorize),
        ("POST", "/oauth/authorize", &authorize),
        ("POST", "/oauth/login", &login),
        ("POST", "/oauth/consent", &consent),
        ("GET", "/oauth/logout", &logout),
        ("POST", "/oauth/logout", &logout),
        ("POST", "/oauth/token", &exchange),
    ] {
        for (param, _) in form.iter() {
            for value in hostile_values() {
                let encoded = encode(form, param, &value);
                let request = if method == "GET" {
                    http.get(app.url(&format!("{path}?{encoded}")))
                } else {
                    http.post(app.url(path))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(encoded)
                };
                let response = match request.header("cookie", &cookie).send().await {
                    Ok(response) => response,
                    // A URL the client library itself refuses to send (over its URI limit).
                    Err(err) if value.len() > 16 * 1024 && err.is_builder() => continue,
                    Err(err) => panic!("{path} {param}={value:.40}: {err:?}"),
                };
                let status = response.status();
                let location = response
                    .headers()
                    .get("location")
                    .map(|v| v.to_str().unwrap().to_owned());
                let text = response.text().await.unwrap();
                let case = format!("{method} {path} {param}={:.40}", value);
                assert!(!status.is_server_error(), "{case}: {status} {text}");
                // (A POST authorization request is answered with its own GET form: that
                // redirect stays on this server.)
                if let Some(location) = location
                    && !location.starts_with("/oauth/authorize?")
                    && *param != "state"
                    && value.len() > 3
                {
                    assert!(!location.contains(&value), "{case}: echoed in {location}");
                }
                tried += 1;
            }
        }
    }
    for value in hostile_values() {
        let response = app
            .http
            .get(app.url("/oauth/userinfo"))
            .header("authorization", format!("Bearer {value}"))
            .send()
            .await;
        if let Ok(response) = response {
            assert!(!response.status().is_server_error(), "userinfo {value:.40}");
        }
    }
    assert!(tried > 500, "{tried}");
    assert_eq!(errors.load(Ordering::SeqCst), 0, "ERROR events were logged");
}

crate::on_both_backends!(
    tweak = |config| {
        config.throttle.account_threshold = 10_000;
        config.throttle.address_threshold = 10_000;
    },
    every_parameter_of_every_endpoint_answers_by_contract,
    unknown_and_repeated_parameter_names_are_never_echoed,
    hostile_basic_credentials_are_invalid_client,
    sign_in_endpoints_answer_hostile_input_by_contract,
);
