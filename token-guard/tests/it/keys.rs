//! The guard's view of the auth server's keys: rotation without restart, refetch on an
//! unknown kid at most once per interval, the last good set kept while the JWKS is down, and
//! withdrawn keys no longer honoured, not even for cached tokens.

use std::sync::Arc;
use std::time::Duration;

use auth_server::model::{KeyAlgorithm, KeyState};
use serde_json::json;
use token_guard::{GuardConfig, GuardError, StaticRevocationList, TokenGuard};

use crate::helpers::{
    AuthServer, JwksProxy, ProtectedApp, READ, assert_invalid_token, guard_config, payload,
};

const DAY: Duration = Duration::from_secs(86_400);

/// A guard reading the JWKS through `proxy`. Its time-based fetches (the periodic refresh and
/// the unknown-kid refetch interval) are set to a day, so the fetch counts asserted below
/// depend only on what the test does, never on how long a loaded machine takes to run it.
async fn guard_behind(auth: &AuthServer, proxy: &JwksProxy) -> TokenGuard {
    let mut config = guard_config(auth, &proxy.url);
    config.unknown_kid_refetch_interval = DAY;
    config.min_refresh = DAY;
    config.max_refresh = DAY;
    TokenGuard::new(config, Arc::new(StaticRevocationList::new()))
        .await
        .unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// Access tokens of `alg` (`ACCESS_TOKEN_ALG`): its chain rotates.
async fn rotation_is_seen_without_restart(alg: KeyAlgorithm) {
    let auth = AuthServer::spawn_with(|config| config.access_token_alg = Some(alg)).await;
    let proxy = JwksProxy::spawn(auth.jwks_url()).await;
    let app = ProtectedApp::spawn(guard_behind(&auth, &proxy).await).await;
    let old_token = auth.token(&[READ]).await;
    assert_eq!(app.get("/me", &old_token).await.status(), 200);
    assert_eq!(proxy.hits(), 1, "one fetch at start");

    let next = auth.admin.generate_key(alg).await.unwrap();
    assert_eq!(next.state, KeyState::Next, "a key is active already");
    let rotation = auth.admin.rotate_keys(alg).await.unwrap();
    assert_eq!(rotation.activated, next.kid);
    auth.keys.reload().await.unwrap();

    let new_token = auth.token(&[READ]).await;
    assert_eq!(kid_of(&new_token), next.kid);
    assert_eq!(
        app.get("/me", &new_token).await.status(),
        200,
        "refetched on the new kid"
    );
    assert_eq!(proxy.hits(), 2);
    assert!(app.guard.jwks().kids().contains(&next.kid));
    assert_eq!(
        app.get("/me", &old_token).await.status(),
        200,
        "retired key still published"
    );

    // The refetch also brought the key announced for the following rotation, so that one
    // needs no fetch at all (and would get none: the refetch interval has not passed).
    let second = auth.admin.rotate_keys(alg).await.unwrap();
    assert_eq!(second.activated, rotation.next);
    auth.keys.reload().await.unwrap();
    let third_token = auth.token(&[READ]).await;
    assert_eq!(kid_of(&third_token), rotation.next);
    assert_eq!(app.get("/me", &third_token).await.status(), 200);
    assert_eq!(proxy.hits(), 2);
}

#[tokio::test]
async fn rotation_to_an_eddsa_key_is_seen_without_restart() {
    rotation_is_seen_without_restart(KeyAlgorithm::EdDSA).await;
}

#[tokio::test]
async fn rotation_to_an_rs256_key_is_seen_without_restart() {
    rotation_is_seen_without_restart(KeyAlgorithm::RS256).await;
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let auth = AuthServer::spawn().await;
    let proxy = JwksProxy::spawn(auth.jwks_url()).await;
    let app = ProtectedApp::spawn(guard_behind(&auth, &proxy).await).await;
    assert_eq!(proxy.hits(), 1);
    let claims = auth.claims(json!({}));
    for (n, kid) in ["unknown-1", "unknown-2", "unknown-1", "unknown-3"]
        .iter()
        .enumerate()
    {
        let token = auth.sign(&claims, Some("at+jwt"), Some(kid));
        assert_invalid_token(app.get("/me", &token).await).await;
        assert_eq!(proxy.hits(), 2, "after {} unknown-kid tokens", n + 1);
    }
    // Concurrent unknown kids do not start fetches of their own either.
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..8 {
        let token = auth.sign(&claims, Some("at+jwt"), Some(&format!("burst-{i}")));
        let (http, url) = (app.http.clone(), format!("{}/me", app.base));
        requests.spawn(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), 401);
    }
    assert_eq!(proxy.hits(), 2);
}

#[tokio::test]
async fn the_last_good_key_set_is_used_while_the_jwks_is_down() {
    let auth = AuthServer::spawn().await;
    let proxy = JwksProxy::spawn(auth.jwks_url()).await;
    let app = ProtectedApp::spawn(guard_behind(&auth, &proxy).await).await;
    let kids = app.guard.jwks().kids();
    proxy.down.store(true, std::sync::atomic::Ordering::SeqCst);

    let err = app.guard.jwks().refresh().await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(app.guard.jwks().kids(), kids);
    // A token never seen before (not in the verified cache) still verifies.
    let token = auth.token(&[READ]).await;
    assert_eq!(app.get("/me", &token).await.status(), 200);
    // An unknown kid tries one refetch, which fails; the answer is still a clean 401.
    let unknown = auth.sign(
        &auth.claims(json!({})),
        Some("at+jwt"),
        Some("rotated-away"),
    );
    assert_invalid_token(app.get("/me", &unknown).await).await;
    assert_eq!(app.guard.jwks().kids(), kids);
    assert_eq!(
        app.get("/me", &auth.token(&[READ]).await).await.status(),
        200
    );
}

#[tokio::test]
async fn a_withdrawn_key_stops_its_tokens_even_cached_ones() {
    let auth = AuthServer::spawn().await;
    let next = auth.admin.generate_key(KeyAlgorithm::ES256).await.unwrap();
    assert_eq!(next.state, KeyState::Next, "a key is active already");
    auth.keys.reload().await.unwrap();
    let proxy = JwksProxy::spawn(auth.jwks_url()).await;
    let app = ProtectedApp::spawn(guard_behind(&auth, &proxy).await).await;
    let token = auth.token(&[READ]).await;
    assert_eq!(app.get("/me", &token).await.status(), 200);
    assert_eq!(app.get("/me", &token).await.status(), 200, "cached");

    *proxy.hidden_kid.lock().unwrap() = Some(auth.active_kid());
    app.guard.jwks().refresh().await.unwrap();
    assert!(!app.guard.jwks().kids().contains(&auth.active_kid()));
    let reason = assert_invalid_token(app.get("/me", &token).await).await;
    assert_eq!(reason, "the token is signed with an unknown key");
    assert_eq!(payload(&token)["aud"], crate::helpers::AUDIENCE);
}

#[tokio::test]
async fn the_guard_does_not_start_without_keys_or_with_bad_settings() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let config = GuardConfig::new(format!("http://{closed}"), "api");
    let err = TokenGuard::new(config, Arc::new(StaticRevocationList::new()))
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::Jwks(_)), "{err}");
    assert!(err.to_string().contains(&closed.to_string()), "{err}");

    let auth = AuthServer::spawn().await;
    let proxy = JwksProxy::spawn(auth.jwks_url()).await;
    proxy.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = TokenGuard::new(
        guard_config(&auth, &proxy.url),
        Arc::new(StaticRevocationList::new()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("HTTP 503"), "{err}");

    let bad = GuardConfig::new(&auth.issuer, "");
    let err = TokenGuard::new(bad, Arc::new(StaticRevocationList::new()))
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::Config(_)), "{err}");
}

#[tokio::test]
async fn the_key_set_is_refreshed_periodically_within_the_bounds() {
    let auth = AuthServer::spawn().await;
    let proxy = JwksProxy::spawn(auth.jwks_url()).await;
    // The proxy says max-age=300; an upper bound of 1 s must win.
    let mut config = guard_config(&auth, &proxy.url);
    config.min_refresh = std::time::Duration::from_millis(500);
    config.max_refresh = std::time::Duration::from_secs(1);
    let guard = TokenGuard::new(config, Arc::new(StaticRevocationList::new()))
        .await
        .unwrap();
    let next = auth.admin.generate_key(KeyAlgorithm::ES256).await.unwrap();
    assert_eq!(next.state, KeyState::Next, "an ES256 key is active already");
    auth.keys.reload().await.unwrap();
    let seen = crate::helpers::eventually(std::time::Duration::from_secs(5), || {
        let found = guard.jwks().kids().contains(&next.kid);
        async move { found }
    })
    .await;
    assert!(
        seen.is_some(),
        "the announced key arrives without any request"
    );
    assert!(proxy.hits() >= 2);
    drop(guard);
}
