//! `POST /oauth/token` with `grant_type=client_credentials`: success with both client
//! authentication methods, every RFC 6749 §5.2 error, scope rules, disabled clients.

use std::time::Duration;

use auth_server::grants::client_auth::CLIENT_CACHE_TTL;
use auth_server::model::GrantType::{ClientCredentials, Password};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;

const CC: (&str, &str) = ("grant_type", "client_credentials");

/// Asserts an OAuth error response: status, code, `no-store`, and a Basic challenge exactly
/// when the status is 401.
pub async fn assert_oauth_error(response: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    if status == StatusCode::UNAUTHORIZED {
        assert!(challenge.unwrap().starts_with("Basic "));
    } else {
        assert_eq!(challenge, None);
    }
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert!(body["error_description"].is_string());
}

/// Verifies a token against the published JWKS as any standard library would.
pub async fn verify(app: &TestApp, token: &str) -> Value {
    let header = decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.expect("kid set");
    let jwks: JwkSet = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks.find(&kid).expect("kid published in the JWKS");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&app.issuer]);
    validation.set_audience(&["transcription-api"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("token verifies against the JWKS")
        .claims
}

async fn basic_auth_happy_path(app: &TestApp) {
    let (id, secret) = app
        .create_client(
            &["transcriptions:write", "transcriptions:read"],
            &[ClientCredentials],
        )
        .await;
    let response = app
        .token(
            &[CC, ("scope", "transcriptions:read")],
            Some((&id, &secret)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "transcriptions:read");
    assert!(
        body.get("refresh_token").is_none(),
        "client_credentials never returns a refresh token"
    );

    let claims = verify(app, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["client_id"], id.as_str());
    assert_eq!(claims["scope"], "transcriptions:read");
    assert_eq!(claims["aud"], "transcription-api");
    assert_eq!(claims["iss"], app.issuer.as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
    let header = decode_header(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
}

async fn post_auth_happy_path(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let response = app
        .token(&[CC, ("client_id", &id), ("client_secret", &secret)], None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let claims = verify(app, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(body["scope"], "a");
}

async fn scope_defaults_to_everything_allowed(app: &TestApp) {
    let (id, secret) = app
        .create_client(&["b", "a", "c"], &[ClientCredentials])
        .await;
    let body: Value = app
        .token(&[CC], Some((&id, &secret)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["scope"], "a b c");
}

async fn scope_subset_is_granted_exactly(app: &TestApp) {
    let (id, secret) = app
        .create_client(&["a", "b", "c"], &[ClientCredentials])
        .await;
    let body: Value = app
        .token(&[CC, ("scope", "c a")], Some((&id, &secret)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["scope"], "c a");
    let claims = verify(app, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["scope"], "c a");
}

async fn excess_unknown_or_malformed_scope_is_invalid_scope(app: &TestApp) {
    app.create_scopes(&["other"]).await;
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    for scope in ["a other", "other", "does-not-exist", "a \"quoted\""] {
        let response = app
            .token(&[CC, ("scope", scope)], Some((&id, &secret)))
            .await;
        assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_scope").await;
    }
}

async fn wrong_secret_unknown_client_and_no_credentials_are_invalid_client(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let wrong = app.token(&[CC], Some((&id, "not-the-secret"))).await;
    assert_oauth_error(wrong, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let unknown = app.token(&[CC], Some(("no-such-client", &secret))).await;
    assert_oauth_error(unknown, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let none = app.token(&[CC], None).await;
    assert_oauth_error(none, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let id_only = app.token(&[CC, ("client_id", &id)], None).await;
    assert_oauth_error(id_only, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

async fn malformed_basic_header_is_invalid_client(app: &TestApp) {
    let headers: [&[u8]; 6] = [
        b"Basic",
        b"Basic %%%",
        b"Basic Zm9vYmFy",
        b"Bearer abc",
        b"Basic \xff\xfe",
        b"Basic /w==:",
    ];
    for header in headers {
        let response = app
            .http
            .post(app.url("/oauth/token"))
            .header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(header).unwrap(),
            )
            .form(&[CC])
            .send()
            .await
            .unwrap();
        assert_oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
}

async fn two_authentication_methods_are_invalid_request(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let response = app
        .token(
            &[CC, ("client_id", &id), ("client_secret", &secret)],
            Some((&id, &secret)),
        )
        .await;
    assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

async fn malformed_requests_are_invalid_request(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let post = |body: Vec<u8>, content_type: &'static str| {
        app.http
            .post(app.url("/oauth/token"))
            .basic_auth(&id, Some(&secret))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            br#"{"grant_type":"client_credentials"}"#.to_vec(),
            "application/json",
        ),
        (b"grant_type=client_credentials".to_vec(), "text/plain"),
        (b"scope=a".to_vec(), form),
        (
            b"grant_type=client_credentials&grant_type=client_credentials".to_vec(),
            form,
        ),
        (
            b"grant_type=client_credentials&scope=a&scope=a".to_vec(),
            form,
        ),
        (b"grant_type=client_credentials&scope=%FF".to_vec(), form),
        (
            b"grant_type=client_credentials&scope=\xff\xfe".to_vec(),
            form,
        ),
    ];
    for (body, content_type) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let response = post(body, content_type).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{shown}");
        assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // The charset parameter of the content type is accepted.
    let ok = post(
        b"grant_type=client_credentials".to_vec(),
        "application/x-www-form-urlencoded; charset=UTF-8",
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

async fn oversized_body_is_rejected(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let padding = "x".repeat(17 * 1024);
    let response = app
        .token(&[CC, ("padding", &padding)], Some((&id, &secret)))
        .await;
    assert_oauth_error(response, StatusCode::PAYLOAD_TOO_LARGE, "invalid_request").await;
}

async fn unknown_grant_type_is_unsupported(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    for grant in [
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
        "CLIENT_CREDENTIALS",
    ] {
        let response = app
            .token(&[("grant_type", grant)], Some((&id, &secret)))
            .await;
        assert_oauth_error(response, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
    }
}

async fn client_without_the_grant_is_unauthorized_client(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    let response = app.token(&[CC], Some((&id, &secret))).await;
    assert_oauth_error(response, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    // A machine client may not redeem authorization codes.
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let response = app
        .token(
            &[("grant_type", "authorization_code"), ("code", "c")],
            Some((&id, &secret)),
        )
        .await;
    assert_oauth_error(response, StatusCode::BAD_REQUEST, "unauthorized_client").await;
}

/// The documented bound: running servers refuse a disabled, deleted or re-enabled client's
/// change within [`CLIENT_CACHE_TTL`] (2 s), measured on the server's clock.
async fn disabled_or_deleted_client_is_refused_within_2_seconds(app: &TestApp) {
    assert_eq!(CLIENT_CACHE_TTL, Duration::from_secs(2));
    for delete in [false, true] {
        let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
        // Warm the client cache.
        assert_eq!(
            app.token(&[CC], Some((&id, &secret))).await.status(),
            StatusCode::OK
        );
        if delete {
            assert!(app.store.delete_client(&id).await.unwrap());
        } else {
            assert!(app.store.set_client_disabled(&id, true).await.unwrap());
        }
        app.clock.advance(CLIENT_CACHE_TTL);
        let response = app.token(&[CC], Some((&id, &secret))).await;
        assert_oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
}

async fn enabled_again_client_is_accepted_within_2_seconds(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    app.store.set_client_disabled(&id, true).await.unwrap();
    assert_eq!(
        app.token(&[CC], Some((&id, &secret))).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.store.set_client_disabled(&id, false).await.unwrap();
    app.clock.advance(CLIENT_CACHE_TTL);
    assert_eq!(
        app.token(&[CC], Some((&id, &secret))).await.status(),
        StatusCode::OK
    );
}

crate::on_both_backends!(
    basic_auth_happy_path,
    post_auth_happy_path,
    scope_defaults_to_everything_allowed,
    scope_subset_is_granted_exactly,
    excess_unknown_or_malformed_scope_is_invalid_scope,
    wrong_secret_unknown_client_and_no_credentials_are_invalid_client,
    malformed_basic_header_is_invalid_client,
    two_authentication_methods_are_invalid_request,
    malformed_requests_are_invalid_request,
    oversized_body_is_rejected,
    unknown_grant_type_is_unsupported,
    client_without_the_grant_is_unauthorized_client,
    disabled_or_deleted_client_is_refused_within_2_seconds,
    enabled_again_client_is_accepted_within_2_seconds,
);
