//! RFC 6750 answers on the API's routes, revocation, and the routes that need no token.
//! (The complete tamper suite runs against the guard itself in token-guard's tests.)

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use token_guard::StaticRevocationList;

use crate::helpers::*;

fn challenge(response: &reqwest::Response) -> String {
    response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn flip_signature(token: &str) -> String {
    let (rest, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = signature.as_bytes().to_vec();
    bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
    format!("{rest}.{}", String::from_utf8(bytes).unwrap())
}

fn alg_none(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    format!("{header}.{payload}.")
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401_with_a_bearer_challenge() {
    let api = TestApi::spawn().await;
    let token = api.token(&[WRITE, READ]).await;

    let missing = api
        .http
        .get(api.url("/transcriptions"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let header = challenge(&missing);
    assert!(
        header.starts_with("Bearer realm=") && !header.contains("error="),
        "{header}"
    );

    for bad in ["garbage", &flip_signature(&token), &alg_none(&token)] {
        let response = api.get(bad, "/transcriptions").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert!(challenge(&response).contains("error=\"invalid_token\""));
    }
    let response = api.submit(&flip_signature(&token), &sample_body()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_without_the_routes_scope_gets_403_naming_it() {
    let api = TestApi::spawn().await;
    let read_only = api.token(&[READ]).await;
    let response = api.submit(&read_only, &sample_body()).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let header = challenge(&response);
    assert!(
        header.contains("error=\"insufficient_scope\"")
            && header.contains("scope=\"transcriptions:write\""),
        "{header}"
    );

    let write_only = api.token(&[WRITE]).await;
    let id = api.create(&write_only).await;
    let response = api.get(&write_only, &format!("/transcriptions/{id}")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(challenge(&response).contains("scope=\"transcriptions:read\""));
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let revocations = Arc::new(StaticRevocationList::new());
    let api = TestApi::spawn_with(Options {
        revocations: revocations.clone(),
        ..Options::default()
    })
    .await;
    let token = api.token(&[READ]).await;
    assert_eq!(
        api.get(&token, "/transcriptions").await.status(),
        StatusCode::OK
    );
    let claims = claims(&token);
    revocations.insert(
        claims["jti"].as_str().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    let response = api.get(&token, "/transcriptions").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&response).contains("invalid_token"));
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn operational_routes_need_no_token() {
    let api = TestApi::spawn().await;
    let health = api.http.get(api.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = api.http.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap()["checks"]["keys"], "ok");

    let spec: Value = api
        .http
        .get(api.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/transcriptions",
        "/transcriptions/{id}",
        "/internal/transcriptions/{id}/result",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the spec"
        );
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(spec["components"]["schemas"]["TranscriptionView"].is_object());

    let token = api.token(&[WRITE]).await;
    api.create(&token).await;
    let metrics = api
        .http
        .get(api.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(
        metrics.contains("transcriptions_submitted_total"),
        "{metrics}"
    );
}
