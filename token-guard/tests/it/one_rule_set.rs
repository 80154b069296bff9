//! One set of token rules: tokens signed with the auth server's own key but unsuitable in one
//! way each are refused by the guard AND inactive at the auth server's `/oauth/introspect`;
//! their honest neighbours are accepted by both. The two sides share one implementation
//! (`token_guard::AccessTokenRules`), and this table proves they agree.

use serde_json::{Value, json};

use crate::helpers::{AUDIENCE, AuthServer, ProtectedApp, b64, guard, now};

/// The auth server's introspection answer for `token`, asked by `introspector`.
async fn introspect(auth: &AuthServer, introspector: &(String, String), token: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/oauth/introspect", auth.base))
        .basic_auth(&introspector.0, Some(&introspector.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn introspection_and_the_guard_give_every_token_the_same_verdict() {
    let auth = AuthServer::spawn().await;
    let (guard, _) = guard(&auth).await;
    let app = ProtectedApp::spawn(guard).await;
    let introspector = auth.client(&["oauth:introspect"]).await;
    let kid = auth.active_kid();
    let now = now();
    // (case, token, accepted by both)
    let mut cases: Vec<(&str, String, bool)> = vec![
        ("as issued", auth.sign_claims(&auth.claims(json!({}))), true),
        (
            "typ application/at+jwt",
            auth.sign(
                &auth.claims(json!({})),
                Some("application/at+jwt"),
                Some(&kid),
            ),
            true,
        ),
        (
            "nbf inside the leeway",
            auth.sign_claims(&auth.claims(json!({"nbf": now + 30}))),
            true,
        ),
        (
            "exp inside the leeway",
            auth.sign_claims(&auth.claims(json!({"exp": now - 30}))),
            true,
        ),
        (
            "empty scope",
            auth.sign_claims(&auth.claims(json!({"scope": ""}))),
            true,
        ),
        (
            "aud as an array",
            auth.sign_claims(&auth.claims(json!({"aud": ["other", AUDIENCE]}))),
            true,
        ),
        (
            "typ JWT",
            auth.sign(&auth.claims(json!({})), Some("JWT"), Some(&kid)),
            false,
        ),
        (
            "no typ",
            auth.sign(&auth.claims(json!({})), None, Some(&kid)),
            false,
        ),
        (
            "no kid",
            auth.sign(&auth.claims(json!({})), Some("at+jwt"), None),
            false,
        ),
        (
            "nbf an hour ahead",
            auth.sign_claims(&auth.claims(json!({"nbf": now + 3600}))),
            false,
        ),
        (
            "expired",
            auth.sign_claims(&auth.claims(json!({"exp": now - 3600}))),
            false,
        ),
        (
            "wrong iss",
            auth.sign_claims(&auth.claims(json!({"iss": "https://other.example"}))),
            false,
        ),
        (
            "wrong aud",
            auth.sign_claims(&auth.claims(json!({"aud": "other"}))),
            false,
        ),
    ];
    for claim in [
        "iat",
        "jti",
        "scope",
        "sub",
        "client_id",
        "exp",
        "nbf",
        "iss",
        "aud",
    ] {
        let name: &'static str = Box::leak(format!("no {claim}").into_boxed_str());
        cases.push((
            name,
            auth.sign_claims(&auth.claims(json!({ claim: null }))),
            false,
        ));
    }
    for claim in ["jti", "sub", "client_id"] {
        let name: &'static str = Box::leak(format!("empty {claim}").into_boxed_str());
        cases.push((
            name,
            auth.sign_claims(&auth.claims(json!({ claim: "" }))),
            false,
        ));
    }
    // An unknown critical header parameter (RFC 7515 §4.1.11), signed with the real key.
    cases.push((
        "crit header",
        sign_with_header(
            &auth,
            json!({
                "alg": "ES256", "typ": "at+jwt", "kid": kid, "crit": ["exp-ext"], "exp-ext": true
            }),
        ),
        false,
    ));
    for (case, token, accepted) in cases {
        let guard_accepts = app.get("/me", &token).await.status() == 200;
        let active = introspect(&auth, &introspector, &token).await["active"] == true;
        assert_eq!(guard_accepts, accepted, "guard: {case}");
        assert_eq!(active, accepted, "introspection: {case}");
    }
}

#[tokio::test]
async fn a_refresh_token_is_told_apart_from_an_access_token() {
    use auth_server::model::GrantType::{Password, RefreshToken};
    let auth = AuthServer::spawn().await;
    let client = auth.client_with(&["read"], &[Password, RefreshToken]).await;
    auth.user("reader@example.com", "correct horse battery", &["read"])
        .await;
    let login = auth
        .grant(
            &client,
            &[
                ("grant_type", "password"),
                ("username", "reader@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    let introspector = auth.client(&["oauth:introspect"]).await;
    let access = introspect(
        &auth,
        &introspector,
        login["access_token"].as_str().unwrap(),
    )
    .await;
    let refresh = introspect(
        &auth,
        &introspector,
        login["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(
        (access["active"].clone(), access["token_type"].clone()),
        (json!(true), json!("Bearer"))
    );
    assert_eq!(access["aud"], AUDIENCE);
    assert_eq!(
        (refresh["active"].clone(), refresh["token_type"].clone()),
        (json!(true), json!("refresh_token"))
    );
    // Nothing in a refresh token's answer lets a resource server take it for an access token.
    assert!(refresh.get("aud").is_none(), "{refresh}");
}

/// Signs the default claims under an arbitrary JOSE header with the active ES256 key.
fn sign_with_header(auth: &AuthServer, header: Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let key = EncodingKey::from_ec_pem(auth.active_pem.as_bytes()).unwrap();
    let message = format!(
        "{}.{}",
        b64(header.to_string()),
        b64(auth.claims(json!({})).to_string())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::ES256).unwrap();
    format!("{message}.{signature}")
}
