//! JWKS, RFC 8414 metadata and health endpoints.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;

async fn jwks_publishes_the_active_key_with_cache_headers(app: &TestApp) {
    let response = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cache = response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_owned();
    // The README's promise, as a literal: verifiers may cache the key set for 5 minutes, which
    // is also the wait documented between `keys generate` and `keys rotate`.
    assert_eq!(cache, "public, max-age=300");
    let jwks: Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "private part never published");
    assert_eq!(key["kid"], app.keys.current().active.kid());
}

/// An issuer with a path: its metadata at the RFC 8414 §3 path-inserted location, and every
/// endpoint it advertises answers there.
#[tokio::test]
async fn an_issuer_with_a_path_serves_what_it_advertises() {
    let issuer = "http://auth.example.test/tenant";
    let app = TestApp::spawn_with(crate::helpers::TestDb::sqlite(), |config| {
        config.issuer = Some(issuer.to_owned());
    })
    .await;
    let (id, secret) = app
        .create_client(
            &["read"],
            &[auth_server::store::GrantType::ClientCredentials],
        )
        .await;
    let meta: Value = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server/tenant"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], issuer);
    // The advertised URLs, moved onto the test server's address.
    let local = |url: &Value| {
        url.as_str()
            .unwrap()
            .replace("http://auth.example.test", &app.base)
    };
    let jwks = app.http.get(local(&meta["jwks_uri"])).send().await.unwrap();
    assert_eq!(jwks.status(), StatusCode::OK);
    let token = app
        .http
        .post(local(&meta["token_endpoint"]))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::OK);
    let token: Value = token.json().await.unwrap();
    for endpoint in ["introspection_endpoint", "revocation_endpoint"] {
        let response = app
            .http
            .post(local(&meta[endpoint]))
            .basic_auth(&id, Some(&secret))
            .form(&[("token", token["access_token"].as_str().unwrap())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{endpoint}");
    }
}

async fn metadata_follows_rfc_8414(app: &TestApp) {
    app.create_scopes(&["transcriptions:read", "transcriptions:write"])
        .await;
    let response = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let meta: Value = response.json().await.unwrap();
    assert_eq!(meta["issuer"], app.issuer.as_str());
    assert_eq!(
        meta["token_endpoint"],
        format!("{}/oauth/token", app.issuer)
    );
    assert_eq!(
        meta["jwks_uri"],
        format!("{}/.well-known/jwks.json", app.issuer)
    );
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!(["client_credentials", "password", "refresh_token"])
    );
    assert_eq!(
        meta["introspection_endpoint"],
        format!("{}/oauth/introspect", app.issuer)
    );
    assert_eq!(
        meta["revocation_endpoint"],
        format!("{}/oauth/revoke", app.issuer)
    );
    assert_eq!(
        meta["scopes_supported"],
        serde_json::json!(["transcriptions:read", "transcriptions:write"])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
}

async fn health_and_readiness(app: &TestApp) {
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
}

crate::on_both_backends!(
    jwks_publishes_the_active_key_with_cache_headers,
    metadata_follows_rfc_8414,
    health_and_readiness,
);
