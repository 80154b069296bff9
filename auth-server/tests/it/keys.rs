//! Signing-key life cycle seen over HTTP: RS256 and EdDSA keys, rotation with a published
//! next key, retired keys kept in the JWKS.

use auth_server::keys::{self, KeyAlgorithm, KeyState};
use auth_server::store::GrantType::ClientCredentials;
use jsonwebtoken::{Algorithm, decode_header};
use serde_json::Value;

use crate::helpers::TestApp;
use crate::token::verify;

async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn token(app: &TestApp, id: &str, secret: &str) -> String {
    let body: Value = app
        .token(&[("grant_type", "client_credentials")], Some((id, secret)))
        .await
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// Rotates to a fresh key of `alg` and checks tokens are signed with it and verify.
async fn rotate_to(app: &TestApp, alg: KeyAlgorithm, expected: Algorithm) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let old_kid = app.keys.current().active.kid().to_owned();
    let old_token = token(app, &id, &secret).await;

    let next = keys::generate_key(app.store.as_ref(), &app.secrets, alg, KeyState::Next)
        .await
        .unwrap();
    app.keys.reload().await.unwrap();
    let kids = jwks_kids(app).await;
    assert!(
        kids.contains(&next.kid),
        "next key is published before it signs"
    );
    let header = decode_header(&token(app, &id, &secret).await).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(old_kid.as_str()),
        "next key does not sign yet"
    );

    let rotation = keys::rotate(app.store.as_ref(), &app.secrets, alg)
        .await
        .unwrap();
    assert_eq!(rotation.activated, next.kid);
    assert_eq!(rotation.retired.as_deref(), Some(old_kid.as_str()));
    assert!(!rotation.unannounced);
    app.keys.reload().await.unwrap();

    let new_token = token(app, &id, &secret).await;
    let header = decode_header(&new_token).unwrap();
    assert_eq!(header.alg, expected);
    assert_eq!(header.kid.as_deref(), Some(next.kid.as_str()));
    verify(app, &new_token).await;
    // Tokens of the retired key still verify: it stays published until they expire.
    let kids = jwks_kids(app).await;
    assert!(kids.contains(&old_kid));
    assert!(kids.contains(&rotation.next));
    verify(app, &old_token).await;
}

async fn rs256_keys_sign_verifiable_tokens(app: &TestApp) {
    rotate_to(app, KeyAlgorithm::RS256, Algorithm::RS256).await;
}

async fn eddsa_keys_sign_verifiable_tokens(app: &TestApp) {
    rotate_to(app, KeyAlgorithm::EdDSA, Algorithm::EdDSA).await;
}

async fn the_active_key_cannot_be_retired(app: &TestApp) {
    let active = app.keys.current().active.kid().to_owned();
    let err = keys::retire(app.store.as_ref(), &active).await.unwrap_err();
    assert!(matches!(err, keys::KeyError::RetireActive(_)));
}

crate::on_both_backends!(
    rs256_keys_sign_verifiable_tokens,
    eddsa_keys_sign_verifiable_tokens,
    the_active_key_cannot_be_retired,
);
