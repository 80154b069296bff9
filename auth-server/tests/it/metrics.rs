//! `GET /metrics`: Prometheus text with tokens issued by grant, token-endpoint errors by code,
//! login failures, revocations and request latency histograms, and nothing that names a
//! client, a user or a secret.

use auth_server::model::GrantType::{ClientCredentials, Password};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, TestDb};

#[tokio::test]
async fn metrics_count_by_fixed_labels_only() {
    let app = TestApp::spawn_with(TestDb::sqlite(), |config| {
        config.metrics = auth_server::telemetry::install_prometheus();
    })
    .await;
    let (id, secret) = app
        .create_client(&["read"], &[ClientCredentials, Password])
        .await;
    app.create_user(
        "metrics-user@example.com",
        "correct horse battery",
        &["read"],
    )
    .await;
    let token: Value = app
        .token(
            &[("grant_type", "client_credentials")],
            Some((&id, &secret)),
        )
        .await
        .json()
        .await
        .unwrap();
    let refused = app
        .token(
            &[("grant_type", "client_credentials")],
            Some((&id, "wrong-secret")),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let failed = app
        .token(
            &[
                ("grant_type", "password"),
                ("username", "metrics-user@example.com"),
                ("password", "not the password"),
            ],
            Some((&id, &secret)),
        )
        .await;
    assert_eq!(failed.status(), StatusCode::BAD_REQUEST);
    let revoked = app
        .post_form(
            "/oauth/revoke",
            &[("token", token["access_token"].as_str().unwrap())],
            (&id, &secret),
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);

    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for series in [
        r#"oauth_tokens_issued_total{grant_type="client_credentials"}"#,
        r#"oauth_token_errors_total{error="invalid_client"}"#,
        r#"oauth_token_errors_total{error="invalid_grant"}"#,
        "oauth_login_failures_total",
        r#"oauth_revocations_total{kind="access_token"}"#,
        r#"http_request_duration_seconds_bucket{method="POST",route="/oauth/token",le="0.005"}"#,
        r#"http_requests_total{method="POST",route="/oauth/token",status="200"}"#,
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    for private in [id.as_str(), secret.as_str(), "metrics-user", "wrong-secret"] {
        assert!(!text.contains(private), "{private} appears in /metrics");
    }
}

#[tokio::test]
async fn metrics_are_404_without_a_recorder() {
    let app = TestApp::sqlite().await;
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
