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
    assert!(cache.starts_with("public, max-age="), "{cache}");
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
