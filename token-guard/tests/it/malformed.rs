//! Whatever arrives in `Authorization`, the answer is a 401 challenge, never a 500 or a panic.

use serde_json::Value;

use crate::helpers::{AUDIENCE, READ, assert_invalid_token, stack};

#[tokio::test]
async fn other_schemes_count_as_no_token() {
    let (_auth, app, _) = stack().await;
    for value in [
        &b"Basic dXNlcjpwYXNz"[..],
        b"Digest x",
        b"Bearerx a.b.c",
        b"token",
    ] {
        let response = app.get_raw("/me", Some(value)).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            format!("Bearer realm=\"{AUDIENCE}\"").as_str()
        );
    }
}

#[tokio::test]
async fn malformed_bearer_values_are_invalid_tokens() {
    let (auth, app, _) = stack().await;
    let token = auth.token(&[READ]).await;
    let cases: Vec<Vec<u8>> = vec![
        b"Bearer".to_vec(),
        b"Bearer ".to_vec(),
        b"Bearer \xff\xfe\xfd".to_vec(),
        format!("Bearer {token} extra").into_bytes(),
        b"Bearer not-a-jwt".to_vec(),
        b"Bearer a.b".to_vec(),
        b"Bearer a.b.c.d.e".to_vec(),
        b"Bearer !!!.???.***".to_vec(),
        b"Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig".to_vec(),
        b"Bearer e30.e30.e30".to_vec(),
        b"Bearer ZZZZ.ZZZZ.ZZZZ".to_vec(),
        format!("Bearer {}", token.replacen('.', "..", 1)).into_bytes(),
        format!("Bearer {token}=").into_bytes(),
    ];
    for value in cases {
        let response = app.get_raw("/me", Some(&value)).await;
        assert_invalid_token(response).await;
    }
}

#[tokio::test]
async fn huge_tokens_are_refused_before_parsing() {
    let (auth, app, _) = stack().await;
    let token = auth.token(&[READ]).await;
    for size in [8 * 1024 + 1, 64 * 1024] {
        let padded = format!("{token}{}", "A".repeat(size - token.len()));
        let response = app.get("/me", &padded).await;
        let reason = assert_invalid_token(response).await;
        assert_eq!(reason, "the token is longer than 8192 bytes");
    }
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let (auth, app, _) = stack().await;
    let token = auth.token(&[READ]).await;
    let response = app
        .http
        .get(format!("{}/me", app.base))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", "Bearer other.token.here")
        .send()
        .await
        .unwrap();
    assert_invalid_token(response).await;
    // Scheme matching is case-insensitive (RFC 7235).
    let response = app
        .get_raw("/me", Some(format!("bEaReR {token}").as_bytes()))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["sub"].is_string());
}
