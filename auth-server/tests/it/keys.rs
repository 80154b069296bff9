//! Signing-key life cycle seen over HTTP: one chain per algorithm (a fresh database has an
//! active ES256 key for access tokens and an active RS256 key for id_tokens), access tokens of
//! `ACCESS_TOKEN_ALG` (ES256, RS256 or EdDSA), rotation of one chain or all with a published
//! next key, the upgrade rule for a database whose only active key is RS256, retired keys kept
//! in the JWKS for exactly the access-token TTL + 60 s (on the server's clock), keys written by
//! another process picked up by the running server.

use std::time::Duration;

use auth_server::admin::{Admin, AdminError, AdminOptions, KeyError};
use auth_server::model::GrantType::ClientCredentials;
use auth_server::model::{KeyAlgorithm, KeyRecord, KeyState};
use auth_server::sealed::SystemSecrets;
use auth_server::{Application, StartError};
use jsonwebtoken::{Algorithm, decode_header};
use serde_json::Value;

use crate::helpers::{TestApp, TestDb};
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

/// The active key of each algorithm, from the store.
async fn active_keys(app: &TestApp) -> Vec<(KeyAlgorithm, String)> {
    let mut active: Vec<(KeyAlgorithm, String)> = app
        .store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.state == KeyState::Active)
        .map(|k| (k.alg, k.kid))
        .collect();
    active.sort_by_key(|(alg, _)| alg.as_str());
    active
}

fn kid_of(keys: &[(KeyAlgorithm, String)], alg: KeyAlgorithm) -> String {
    keys.iter()
        .find(|(a, _)| *a == alg)
        .map(|(_, kid)| kid.clone())
        .unwrap_or_else(|| panic!("no active {alg:?} key in {keys:?}"))
}

/// The token is accepted by the rules resource servers apply (token-guard), with the keys of
/// the server's JWKS.
fn accepted_by_token_guard(app: &TestApp, token: &str) {
    let rules = token_guard::AccessTokenRules::new(
        &app.issuer,
        "transcription-api",
        Duration::from_secs(60),
        token_guard::DEFAULT_MAX_TOKEN_LEN,
    );
    let keys = app.keys.current();
    rules
        .verify(token, |kid| keys.public_key(kid))
        .expect("token-guard accepts the access token");
}

/// Rotates the access-token chain (the server runs with `ACCESS_TOKEN_ALG=alg`) to a fresh
/// key of `alg` and checks tokens are signed with it and verify.
async fn rotate_to(app: &TestApp, alg: KeyAlgorithm, expected: Algorithm) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let old_kid = app.keys.current().access().kid().to_owned();
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

/// Before per-algorithm chains, rotating with `--alg RS256` made access tokens RS256; now
/// `ACCESS_TOKEN_ALG` does, and the rotation stays within that chain.
mod rs256_access_tokens {
    use super::*;

    async fn rs256_keys_sign_verifiable_tokens(app: &TestApp) {
        rotate_to(app, KeyAlgorithm::RS256, Algorithm::RS256).await;
    }

    /// With `ACCESS_TOKEN_ALG=RS256` a fresh database needs one key only: RS256 signs both
    /// access tokens and id_tokens.
    async fn access_tokens_are_rs256_and_accepted(app: &TestApp) {
        let active = active_keys(app).await;
        assert_eq!(active.len(), 1, "{active:?}");
        let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
        let token = token(app, &id, &secret).await;
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid, Some(kid_of(&active, KeyAlgorithm::RS256)));
        verify(app, &token).await;
        accepted_by_token_guard(app, &token);
    }

    crate::on_both_backends!(
        tweak = |config| config.access_token_alg = Some(auth_server::model::KeyAlgorithm::RS256),
        rs256_keys_sign_verifiable_tokens,
        access_tokens_are_rs256_and_accepted,
    );
}

mod eddsa_access_tokens {
    use super::*;

    async fn eddsa_keys_sign_verifiable_tokens(app: &TestApp) {
        rotate_to(app, KeyAlgorithm::EdDSA, Algorithm::EdDSA).await;
        let algs: Vec<KeyAlgorithm> = active_keys(app).await.into_iter().map(|(a, _)| a).collect();
        assert_eq!(
            algs,
            [KeyAlgorithm::EdDSA, KeyAlgorithm::RS256],
            "RS256 for id_tokens"
        );
    }

    crate::on_both_backends!(
        tweak = |config| config.access_token_alg = Some(auth_server::model::KeyAlgorithm::EdDSA),
        eddsa_keys_sign_verifiable_tokens,
    );
}

/// A fresh database: an active ES256 key (access tokens) and an active RS256 key, RSA 2048
/// (id_tokens, OIDC Core §15.1), both in the JWKS; access tokens are ES256 and pass
/// token-guard as before.
async fn a_fresh_database_has_an_active_es256_and_rs256_key(app: &TestApp) {
    let active = active_keys(app).await;
    let algs: Vec<KeyAlgorithm> = active.iter().map(|(alg, _)| *alg).collect();
    assert_eq!(algs, [KeyAlgorithm::ES256, KeyAlgorithm::RS256]);
    let kids = jwks_kids(app).await;
    for (_, kid) in &active {
        assert!(kids.contains(kid), "{kid} published");
    }
    let current = app.keys.current();
    let es256 = kid_of(&active, KeyAlgorithm::ES256);
    let rs256 = kid_of(&active, KeyAlgorithm::RS256);
    assert_eq!(current.access().kid(), es256);
    assert_eq!(current.active(KeyAlgorithm::ES256).unwrap().kid(), es256);
    assert_eq!(current.active(KeyAlgorithm::RS256).unwrap().kid(), rs256);
    assert!(current.active(KeyAlgorithm::EdDSA).is_none());

    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let token = token(app, &id, &secret).await;
    let header = decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid, Some(es256));
    verify(app, &token).await;
    accepted_by_token_guard(app, &token);
}

/// Rotating the RS256 chain leaves the ES256 keys (and access tokens) alone, and rotating the
/// ES256 chain leaves the RS256 keys alone.
async fn rotating_one_chain_leaves_the_other_untouched(app: &TestApp) {
    let before = active_keys(app).await;
    let es256 = kid_of(&before, KeyAlgorithm::ES256);
    let rs256 = kid_of(&before, KeyAlgorithm::RS256);
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;

    let rotation = app.admin.rotate_keys(KeyAlgorithm::RS256).await.unwrap();
    assert_eq!(rotation.alg, KeyAlgorithm::RS256);
    assert_eq!(rotation.retired.as_deref(), Some(rs256.as_str()));
    app.keys.reload().await.unwrap();
    let after = active_keys(app).await;
    assert_eq!(
        kid_of(&after, KeyAlgorithm::ES256),
        es256,
        "ES256 untouched"
    );
    assert_eq!(kid_of(&after, KeyAlgorithm::RS256), rotation.activated);
    let header = decode_header(&token(app, &id, &secret).await).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(es256.as_str()),
        "access tokens unchanged"
    );

    let rotation = app.admin.rotate_keys(KeyAlgorithm::ES256).await.unwrap();
    assert_eq!(rotation.retired.as_deref(), Some(es256.as_str()));
    let rs256_now = kid_of(&after, KeyAlgorithm::RS256);
    let after = active_keys(app).await;
    assert_eq!(
        kid_of(&after, KeyAlgorithm::RS256),
        rs256_now,
        "RS256 untouched"
    );
    assert_eq!(kid_of(&after, KeyAlgorithm::ES256), rotation.activated);
    let states: Vec<(String, KeyState)> = app
        .store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.alg == KeyAlgorithm::RS256)
        .map(|k| (k.kid, k.state))
        .collect();
    assert_eq!(
        states.iter().filter(|(_, s)| *s == KeyState::Next).count(),
        1,
        "the RS256 chain keeps its one next key: {states:?}"
    );
}

/// `keys rotate` without `--alg`: every chain with an active key rotates, ES256 first.
async fn rotating_all_chains_rotates_es256_and_rs256(app: &TestApp) {
    let before = active_keys(app).await;
    let rotations = app.admin.rotate_all_keys().await.unwrap();
    let algs: Vec<KeyAlgorithm> = rotations.iter().map(|r| r.alg).collect();
    assert_eq!(algs, [KeyAlgorithm::ES256, KeyAlgorithm::RS256]);
    for rotation in &rotations {
        assert_eq!(
            rotation.retired.as_deref(),
            Some(kid_of(&before, rotation.alg).as_str())
        );
    }
    let after = active_keys(app).await;
    assert_eq!(
        after,
        rotations
            .iter()
            .map(|r| (r.alg, r.activated.clone()))
            .collect::<Vec<_>>()
    );
    app.keys.reload().await.unwrap();
    let kids = jwks_kids(app).await;
    for rotation in &rotations {
        assert!(kids.contains(&rotation.next), "the next keys are announced");
    }
}

async fn the_active_key_cannot_be_retired(app: &TestApp) {
    let active = app.keys.current().access().kid().to_owned();
    let err = app.admin.retire_key(&active).await.unwrap_err();
    assert!(matches!(err, AdminError::Keys(KeyError::RetireActive(_))));
}

/// The README's rule: a retired key stays published until the last token it signed has
/// expired, access-token TTL (900 s by default) + 60 s after its retirement; not a moment less,
/// and not after.
async fn a_retired_key_is_published_for_the_access_token_ttl_plus_60_seconds(app: &TestApp) {
    let old_kid = app.keys.current().access().kid().to_owned();
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
    assert!(kids.contains(&app.keys.current().access().kid().to_owned()));
}

crate::on_both_backends!(
    a_fresh_database_has_an_active_es256_and_rs256_key,
    rotating_one_chain_leaves_the_other_untouched,
    rotating_all_chains_rotates_es256_and_rs256,
    the_active_key_cannot_be_retired,
    a_retired_key_is_published_for_the_access_token_ttl_plus_60_seconds,
);

/// A database whose only active key is RS256 (access tokens were RS256 before per-algorithm
/// chains): with `ACCESS_TOKEN_ALG` unset the server refuses to start with one line rather
/// than switch access tokens to a new ES256 key, and generates nothing; with
/// `ACCESS_TOKEN_ALG=RS256` it keeps signing with that key; with `ACCESS_TOKEN_ALG=ES256` set
/// explicitly it generates the ES256 key and switches.
async fn an_rs256_only_database_needs_access_token_alg(db: TestDb) {
    let secrets = SystemSecrets::from_list(&db.auth_secrets).unwrap();
    let admin = Admin::open(&AdminOptions {
        secrets: Some(secrets),
        ..AdminOptions::new(&db.url)
    })
    .await
    .unwrap();
    let rs256 = admin.generate_key(KeyAlgorithm::RS256).await.unwrap();
    assert_eq!(rs256.state, KeyState::Active);
    let keys_now = || async { admin.list_keys().await.unwrap() };
    let before: Vec<KeyRecord> = keys_now().await;

    let err = match Application::build(TestApp::config(&db)).await {
        Ok(_) => panic!("started with ACCESS_TOKEN_ALG unset on an RS256-only database"),
        Err(err) => err,
    };
    assert!(
        matches!(err, StartError::Keys(KeyError::AccessAlgorithmUnset { .. })),
        "{err:?}"
    );
    let line = err.to_string();
    assert!(
        line.ends_with(
            "ACCESS_TOKEN_ALG is ES256 but the active access-token key is RS256: set ACCESS_TOKEN_ALG=RS256"
        ),
        "{line}"
    );
    assert!(!line.contains('\n'), "{line}");
    assert_eq!(keys_now().await, before, "nothing generated");

    let app = TestApp::spawn_with(db, |config| {
        config.access_token_alg = Some(KeyAlgorithm::RS256);
    })
    .await;
    assert_eq!(
        app.store.list_keys().await.unwrap(),
        before,
        "nothing generated"
    );
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let header = decode_header(&token(&app, &id, &secret).await).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid, Some(rs256.kid.clone()));

    let mut config = TestApp::config(&app.db);
    config.access_token_alg = Some(KeyAlgorithm::ES256);
    let explicit = Application::build(config)
        .await
        .expect("ACCESS_TOKEN_ALG=ES256 set explicitly starts");
    let current = explicit.key_ring().current();
    assert_eq!(current.access().alg(), KeyAlgorithm::ES256);
    assert_eq!(
        current.active(KeyAlgorithm::RS256).unwrap().kid(),
        rs256.kid
    );
}

#[tokio::test]
async fn sqlite_an_rs256_only_database_needs_access_token_alg() {
    an_rs256_only_database_needs_access_token_alg(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_an_rs256_only_database_needs_access_token_alg() {
    if let Some(db) = TestDb::postgres().await {
        an_rs256_only_database_needs_access_token_alg(db).await;
    }
}

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
