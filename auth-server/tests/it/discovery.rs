//! JWKS, RFC 8414 metadata and health endpoints.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;

/// A fresh database has two active keys, ES256 (access tokens) and RS256 (id_tokens, OIDC Core
/// §15.1), and the JWKS publishes both.
async fn jwks_publishes_the_active_keys_with_cache_headers(app: &TestApp) {
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
    assert_eq!(keys.len(), 2, "{keys:?}");
    let by_alg = |alg: &str| keys.iter().find(|k| k["alg"] == alg).unwrap();
    let key = by_alg("ES256");
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "private part never published");
    assert_eq!(key["kid"], app.keys.current().access().kid());
    let rsa = by_alg("RS256");
    assert_eq!(rsa["kty"], "RSA");
    assert_eq!(rsa["use"], "sig");
    assert!(rsa.get("d").is_none(), "private part never published");
    // RSA 2048: a 256-byte modulus.
    let modulus = rsa["n"].as_str().unwrap();
    assert_eq!(modulus.len(), 342, "{modulus}");
    let current = app.keys.current();
    let active_rs256 = current
        .active(auth_server::model::KeyAlgorithm::RS256)
        .unwrap();
    assert_eq!(rsa["kid"], active_rs256.kid());
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
            &[auth_server::model::GrantType::ClientCredentials],
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
        serde_json::json!([
            "authorization_code",
            "client_credentials",
            "password",
            "refresh_token"
        ])
    );
    assert_eq!(
        meta["introspection_endpoint"],
        format!("{}/oauth/introspect", app.issuer)
    );
    assert_eq!(
        meta["revocation_endpoint"],
        format!("{}/oauth/revoke", app.issuer)
    );
    // With the OpenID Connect identity scopes, which every database has.
    assert_eq!(
        meta["scopes_supported"],
        serde_json::json!([
            "email",
            "openid",
            "profile",
            "transcriptions:read",
            "transcriptions:write"
        ])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(
        meta["introspection_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    // Sign-in for people: the code flow with PKCE (S256 only) and OpenID Connect.
    for (member, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("userinfo_endpoint", "/oauth/userinfo"),
        ("end_session_endpoint", "/oauth/logout"),
    ] {
        assert_eq!(meta[member], format!("{}{path}", app.issuer), "{member}");
    }
    assert_eq!(
        meta["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert_eq!(meta["request_uri_parameter_supported"], false);
    assert_eq!(
        meta["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256", "ES256"])
    );
    assert_eq!(
        meta["subject_types_supported"],
        serde_json::json!(["public"])
    );
    // The OpenID Connect Discovery location serves the same document.
    let oidc: Value = app
        .http
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oidc, meta);
}

/// A Python interpreter that has authlib: `python3` on the PATH, else the system one (where
/// Debian's `python3-authlib` lives). `None` outside CI when there is none (the test skips);
/// in CI (`CI=true`) a missing authlib fails the test.
fn python_with_authlib() -> Option<&'static str> {
    let found = ["python3", "/usr/bin/python3"].into_iter().find(|python| {
        std::process::Command::new(python)
            .args(["-c", "import authlib"])
            .output()
            .is_ok_and(|output| output.status.success())
    });
    if found.is_none() {
        assert!(
            !test_support::ci::in_ci(),
            "authlib is required in CI: apt-get install python3-authlib"
        );
        eprintln!("skipping: no python3 with authlib (apt-get install python3-authlib)");
    }
    found
}

/// Validates a metadata document with authlib's RFC 8414 and OpenID Connect Discovery
/// validators; its error when it fails.
fn authlib_validate(python: &str, document: &str) -> Result<(), String> {
    use std::io::Write;
    let script = "import json, sys\n\
                  from authlib.oauth2.rfc8414 import AuthorizationServerMetadata\n\
                  from authlib.oidc.discovery import OpenIDProviderMetadata\n\
                  document = json.load(sys.stdin)\n\
                  AuthorizationServerMetadata(document).validate()\n\
                  OpenIDProviderMetadata(document).validate()\n";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(document.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The served metadata, at the plain and at the path-inserted location, passes a stock
/// client's validation (authlib), and the validator does refuse what it used to serve.
#[tokio::test]
async fn the_metadata_passes_authlibs_validation() {
    let Some(python) = python_with_authlib() else {
        return;
    };
    for (issuer, location) in [
        (
            "https://auth.example.test",
            "/.well-known/oauth-authorization-server",
        ),
        (
            "https://auth.example.test/tenant",
            "/.well-known/oauth-authorization-server/tenant",
        ),
        (
            "https://auth.example.test",
            "/.well-known/openid-configuration",
        ),
        (
            "https://auth.example.test/tenant",
            "/tenant/.well-known/openid-configuration",
        ),
    ] {
        let app = TestApp::spawn_with(crate::helpers::TestDb::sqlite(), |config| {
            config.issuer = Some(issuer.to_owned());
        })
        .await;
        app.create_scopes(&["transcriptions:read"]).await;
        let response = app.http.get(app.url(location)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{location}");
        let document = response.text().await.unwrap();
        let meta: Value = serde_json::from_str(&document).unwrap();
        assert_eq!(meta["issuer"], issuer);
        if let Err(refusal) = authlib_validate(python, &document) {
            panic!("authlib refuses the metadata of {issuer}: {refusal}\n{document}");
        }
        // The validator is not a rubber stamp: the old empty list is refused.
        let mut old = meta.clone();
        old["response_types_supported"] = serde_json::json!([]);
        let refusal = authlib_validate(python, &old.to_string()).unwrap_err();
        assert!(refusal.contains("response_types_supported"), "{refusal}");
    }
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
    jwks_publishes_the_active_keys_with_cache_headers,
    metadata_follows_rfc_8414,
    health_and_readiness,
);
