//! Signing-key life cycle seen over HTTP: RS256 and EdDSA keys, rotation with a published
//! next key, retired keys kept in the JWKS for exactly the access-token TTL + 60 s (on the
//! server's clock), keys written by another process picked up by the running server.

use std::time::Duration;

use auth_server::admin::{AdminError, KeyError};
use auth_server::model::GrantType::ClientCredentials;
use auth_server::model::{KeyAlgorithm, KeyState};
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

    let next = app.admin.generate_key(alg).await.unwrap();
    assert_eq!(next.state, KeyState::Next, "a key is active already");
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

    let rotation = app.admin.rotate_keys(alg).await.unwrap();
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
    let err = app.admin.retire_key(&active).await.unwrap_err();
    assert!(matches!(err, AdminError::Keys(KeyError::RetireActive(_))));
}

/// The README's rule: a retired key stays published until the last token it signed has
/// expired, access-token TTL (900 s by default) + 60 s after its retirement; not a moment less,
/// and not after.
async fn a_retired_key_is_published_for_the_access_token_ttl_plus_60_seconds(app: &TestApp) {
    let old_kid = app.keys.current().active.kid().to_owned();
    app.admin.rotate_keys(KeyAlgorithm::ES256).await.unwrap();
    let retired_at = app
        .store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.kid == old_kid)
        .and_then(|k| k.retired_at)
        .expect("the old key is retired");
    let published_for = Duration::from_secs(900 + 60);

    app.clock
        .set(retired_at + published_for - Duration::from_millis(1));
    app.keys.reload().await.unwrap();
    assert!(
        jwks_kids(app).await.contains(&old_kid),
        "published until TTL + 60 s"
    );

    app.clock.set(retired_at + published_for);
    app.keys.reload().await.unwrap();
    let kids = jwks_kids(app).await;
    assert!(!kids.contains(&old_kid), "withdrawn at TTL + 60 s");
    assert!(kids.contains(&app.keys.current().active.kid().to_owned()));
}

crate::on_both_backends!(
    rs256_keys_sign_verifiable_tokens,
    eddsa_keys_sign_verifiable_tokens,
    the_active_key_cannot_be_retired,
    a_retired_key_is_published_for_the_access_token_ttl_plus_60_seconds,
);

/// A running server re-reads its keys every [`KEY_RELOAD_INTERVAL`] (10 s, as the README says),
/// so a key written by another process (the CLI, another replica) is published without a
/// restart. The interval is shortened here so the test waits for the event, not the clock.
mod reload {
    use std::time::{Duration, Instant};

    use auth_server::KEY_RELOAD_INTERVAL;
    use auth_server::config::ServerConfig;

    use super::*;

    #[test]
    fn the_documented_interval_is_the_default() {
        assert_eq!(KEY_RELOAD_INTERVAL, Duration::from_secs(10));
        let config = ServerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            "sqlite::memory:",
            "k".into(),
        );
        assert_eq!(config.key_reload_interval, KEY_RELOAD_INTERVAL);
    }

    async fn a_key_written_by_another_process_is_published_without_restart(app: &TestApp) {
        // What `auth-server keys generate` does from another process: a row in the database;
        // this server's key ring is not told.
        let next = app.admin.generate_key(KeyAlgorithm::ES256).await.unwrap();
        assert_eq!(next.state, KeyState::Next, "a key is active already");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !jwks_kids(app).await.contains(&next.kid) {
            assert!(Instant::now() < deadline, "the new key was never published");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    crate::on_both_backends!(
        tweak = |config| config.key_reload_interval = std::time::Duration::from_millis(50),
        a_key_written_by_another_process_is_published_without_restart,
    );
}
