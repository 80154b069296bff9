//! The tamper suite: each forged or unsuitable token is refused with the right RFC 6750 answer,
//! and the honest neighbours of each case (inside the leeway, other accepted `typ` spellings)
//! still pass.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{
    AUDIENCE, READ, WRITE, assert_invalid_token, b64, now, payload, stack, with_payload,
};

#[tokio::test]
async fn a_token_from_the_auth_server_is_accepted_and_gives_the_principal() {
    let (auth, app, _) = stack().await;
    let token = auth.token(&[WRITE, READ]).await;
    let claims = payload(&token);
    for _ in 0..2 {
        // The second request is answered from the verified-token cache.
        let response = app.get("/me", &token).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["sub"], claims["sub"]);
        assert_eq!(body["client_id"], claims["client_id"]);
        assert_eq!(body["jti"], claims["jti"]);
        assert_eq!(body["exp"], claims["exp"]);
        assert_eq!(body["scopes"], json!([READ, WRITE]));
    }
    assert_eq!(app.post("/transcriptions", &token).await.status(), 201);
    assert_eq!(app.get("/read-and-write", &token).await.status(), 200);
}

#[tokio::test]
async fn no_token_gets_a_bare_challenge() {
    let (_auth, app, _) = stack().await;
    for path in ["/me", "/transcriptions"] {
        let response = if path == "/me" {
            app.get_raw(path, None).await
        } else {
            app.http
                .post(format!("{}{path}", app.base))
                .send()
                .await
                .unwrap()
        };
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(
            response.headers()["www-authenticate"],
            format!("Bearer realm=\"{AUDIENCE}\"").as_str()
        );
    }
}

#[tokio::test]
async fn a_flipped_signature_is_refused() {
    let (auth, app, _) = stack().await;
    let token = auth.token(&[READ]).await;
    let (message, signature) = token.rsplit_once('.').unwrap();
    let mut raw =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
            .unwrap();
    raw[10] ^= 0x01;
    let forged = format!("{message}.{}", b64(&raw));
    let reason = assert_invalid_token(app.get("/me", &forged).await).await;
    assert_eq!(reason, "the token signature is invalid");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (auth, app, _) = stack().await;
    let claims = auth.claims(json!({}));
    let kid = auth.active_kid();
    for header in [
        json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
        json!({"alg": "none", "typ": "at+jwt"}),
    ] {
        let unsigned = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        for token in [format!("{unsigned}."), format!("{unsigned}.c2ln")] {
            assert_invalid_token(app.get("/me", &token).await).await;
        }
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let (auth, app, _) = stack().await;
    let claims = auth.claims(json!({}));
    let kid = auth.active_kid();
    let jwks: Value = reqwest::get(auth.jwks_url())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap()
        .clone();
    let decode = |field: &str| {
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            jwk[field].as_str().unwrap(),
        )
        .unwrap()
    };
    let mut point = vec![4u8];
    point.extend(decode("x"));
    point.extend(decode("y"));
    // The public key as an attacker might feed it to HMAC: the JWK text, the raw point.
    for secret in [jwk.to_string().into_bytes(), point] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.typ = Some("at+jwt".into());
            header.kid = Some(kid.clone());
            let token =
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
            let reason = assert_invalid_token(app.get("/me", &token).await).await;
            assert_eq!(reason, "the token algorithm is not allowed");
        }
    }
}

#[tokio::test]
async fn a_header_alg_other_than_the_keys_is_refused() {
    let (auth, app, _) = stack().await;
    let token = auth.sign_claims(&auth.claims(json!({})));
    let (header, rest) = token.split_once('.').unwrap();
    let mut header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    for alg in ["RS256", "EdDSA"] {
        header["alg"] = json!(alg);
        let forged = format!("{}.{rest}", b64(header.to_string()));
        let reason = assert_invalid_token(app.get("/me", &forged).await).await;
        assert_eq!(reason, "the token algorithm does not match its key");
    }
}

#[tokio::test]
async fn time_claims_apply_a_60_second_leeway() {
    let (auth, app, _) = stack().await;
    let now = now();
    let refused = [
        (
            json!({"exp": now - 120, "iat": now - 1000, "nbf": now - 1000}),
            "the token has expired",
        ),
        (json!({"nbf": now + 120}), "the token is not valid yet"),
    ];
    for (changes, expected) in refused {
        let token = auth.sign_claims(&auth.claims(changes));
        assert_eq!(
            assert_invalid_token(app.get("/me", &token).await).await,
            expected
        );
    }
    for changes in [
        json!({"exp": now - 30, "iat": now - 1000, "nbf": now - 1000}),
        json!({"nbf": now + 30}),
    ] {
        let token = auth.sign_claims(&auth.claims(changes.clone()));
        assert_eq!(app.get("/me", &token).await.status(), 200, "{changes}");
    }
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_refused() {
    let (auth, app, _) = stack().await;
    let cases = [
        (
            json!({"iss": "http://evil.example"}),
            "the token issuer is not trusted",
        ),
        (
            json!({"iss": format!("{}/", auth.issuer)}),
            "the token issuer is not trusted",
        ),
        (
            json!({"aud": "worker"}),
            "the token is not meant for this service",
        ),
        (
            json!({"aud": ["worker", "billing"]}),
            "the token is not meant for this service",
        ),
    ];
    for (changes, expected) in cases {
        let token = auth.sign_claims(&auth.claims(changes));
        assert_eq!(
            assert_invalid_token(app.get("/me", &token).await).await,
            expected
        );
    }
    let listed = auth.sign_claims(&auth.claims(json!({"aud": ["worker", AUDIENCE]})));
    assert_eq!(app.get("/me", &listed).await.status(), 200);
}

#[tokio::test]
async fn missing_claims_are_refused() {
    let (auth, app, _) = stack().await;
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "client_id",
        "scope",
    ] {
        let token = auth.sign_claims(&auth.claims(json!({ claim: null })));
        let reason = assert_invalid_token(app.get("/me", &token).await).await;
        assert_eq!(
            reason,
            format!("the token lacks the claim {claim}"),
            "{claim}"
        );
    }
    let token = auth.sign_claims(&auth.claims(json!({"exp": "tomorrow"})));
    assert_invalid_token(app.get("/me", &token).await).await;
}

#[tokio::test]
async fn an_unknown_kid_or_no_kid_is_refused() {
    let (auth, app, _) = stack().await;
    let claims = auth.claims(json!({}));
    let unknown = auth.sign(&claims, Some("at+jwt"), Some("no-such-key"));
    assert_eq!(
        assert_invalid_token(app.get("/me", &unknown).await).await,
        "the token is signed with an unknown key"
    );
    let none = auth.sign(&claims, Some("at+jwt"), None);
    assert_eq!(
        assert_invalid_token(app.get("/me", &none).await).await,
        "the token header has no key id"
    );
}

#[tokio::test]
async fn only_the_at_jwt_type_is_accepted() {
    let (auth, app, _) = stack().await;
    let claims = auth.claims(json!({}));
    let kid = auth.active_kid();
    for typ in [Some("JWT"), Some("jwt"), Some("at+jwe"), None] {
        let token = auth.sign(&claims, typ, Some(&kid));
        let reason = assert_invalid_token(app.get("/me", &token).await).await;
        assert_eq!(reason, "the token type is not at+jwt", "{typ:?}");
    }
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let token = auth.sign(&claims, Some(typ), Some(&kid));
        assert_eq!(app.get("/me", &token).await.status(), 200, "{typ}");
    }
}

#[tokio::test]
async fn a_revoked_jti_is_refused_even_after_caching() {
    let (auth, app, revoked) = stack().await;
    let token = auth.token(&[READ]).await;
    assert_eq!(app.get("/me", &token).await.status(), 200);
    assert_eq!(app.get("/me", &token).await.status(), 200);
    let claims = payload(&token);
    revoked.insert(
        claims["jti"].as_str().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    for _ in 0..2 {
        let reason = assert_invalid_token(app.get("/me", &token).await).await;
        assert_eq!(reason, "the token has been revoked");
    }
    // Revoked before it was ever seen.
    let fresh = auth.token(&[READ]).await;
    let claims = payload(&fresh);
    revoked.insert(
        claims["jti"].as_str().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_invalid_token(app.get("/me", &fresh).await).await;
    assert_eq!(
        assert_invalid_token(app.post("/transcriptions", &fresh).await).await,
        "the token has been revoked"
    );
}

#[tokio::test]
async fn a_missing_scope_is_403_with_the_scope() {
    let (auth, app, _) = stack().await;
    let token = auth.token(&[READ]).await;
    for response in [
        app.post("/transcriptions", &token).await,
        app.get("/read-and-write", &token).await,
    ] {
        assert_eq!(response.status(), 403);
        assert_eq!(
            response.headers()["www-authenticate"],
            format!("Bearer realm=\"{AUDIENCE}\", error=\"insufficient_scope\", scope=\"{WRITE}\"")
                .as_str()
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "insufficient_scope");
        assert_eq!(body["scope"], WRITE);
    }
    // The same token is fine where no scope is required.
    assert_eq!(app.get("/me", &token).await.status(), 200);
}

#[tokio::test]
async fn escalating_scope_by_editing_claims_breaks_the_signature() {
    let (auth, app, _) = stack().await;
    let token = auth.token(&[READ]).await;
    assert_eq!(app.get("/me", &token).await.status(), 200);
    let mut claims = payload(&token);
    claims["scope"] = json!(format!("{READ} {WRITE}"));
    let escalated = with_payload(&token, &claims);
    let reason = assert_invalid_token(app.post("/transcriptions", &escalated).await).await;
    assert_eq!(reason, "the token signature is invalid");
    let mut claims = payload(&token);
    claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
    assert_invalid_token(app.get("/me", &with_payload(&token, &claims)).await).await;
}
