//! `POST /oauth/introspect` (RFC 7662) and `POST /oauth/revoke` (RFC 7009).

use auth_server::grants::INTROSPECT_SCOPE;
use auth_server::model::GrantType::{ClientCredentials, Password, RefreshToken};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;
use crate::password::{PASSWORD, login};

pub async fn introspect(app: &TestApp, caller: (&str, &str), token: &str) -> Value {
    let response = app
        .post_form("/oauth/introspect", &[("token", token)], caller)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn revoke(app: &TestApp, caller: (&str, &str), token: &str) {
    let response = app
        .post_form("/oauth/revoke", &[("token", token)], caller)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn access_token(app: &TestApp, client: (&str, &str)) -> String {
    let body: Value = app
        .token(&[("grant_type", "client_credentials")], Some(client))
        .await
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn a_client_introspects_its_own_access_token(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let token = access_token(app, (&id, &secret)).await;
    let info = introspect(app, (&id, &secret), &token).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], id.as_str());
    assert_eq!(info["sub"], id.as_str());
    assert_eq!(info["scope"], "a");
    assert_eq!(info["token_type"], "Bearer");
    assert!(info["exp"].as_i64().is_some() && info["jti"].is_string());
}

async fn others_tokens_and_garbage_are_inactive_without_the_introspect_scope(app: &TestApp) {
    let owner = app.create_client(&["a"], &[ClientCredentials]).await;
    let stranger = app.create_client(&["a"], &[ClientCredentials]).await;
    let resource_server = app
        .create_client(&[INTROSPECT_SCOPE], &[ClientCredentials])
        .await;
    let token = access_token(app, (&owner.0, &owner.1)).await;

    assert_eq!(
        introspect(app, (&stranger.0, &stranger.1), &token).await,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        introspect(app, (&resource_server.0, &resource_server.1), &token).await["active"],
        true
    );
    for garbage in ["x", "a.b.c", &format!("{token}x"), &token.replace('.', "")] {
        assert_eq!(
            introspect(app, (&owner.0, &owner.1), garbage).await,
            serde_json::json!({"active": false})
        );
    }
}

async fn introspection_requires_client_authentication_and_a_token(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let anonymous = app
        .http
        .post(app.url("/oauth/introspect"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let missing = app
        .post_form("/oauth/introspect", &[], (&id, &secret))
        .await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
}

async fn a_revoked_access_token_is_inactive_until_it_expires(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let token = access_token(app, (&id, &secret)).await;
    revoke(app, (&id, &secret), &token).await;
    assert_eq!(
        introspect(app, (&id, &secret), &token).await["active"],
        false
    );
    let jti = crate::token::verify(app, &token).await["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        app.store.is_access_token_denied(&jti, now).await.unwrap(),
        "the jti is on the deny-list"
    );
    // Revoking unknown tokens is a silent success (RFC 7009 §2.2).
    revoke(app, (&id, &secret), "never-issued").await;
}

async fn a_revoked_refresh_token_ends_its_whole_family(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password, RefreshToken]).await;
    app.create_user("intro@example.com", PASSWORD, &["a"]).await;
    let body: Value = login(app, (&id, &secret), "intro@example.com", PASSWORD, None)
        .await
        .json()
        .await
        .unwrap();
    let r1 = body["refresh_token"].as_str().unwrap();
    let info = introspect(app, (&id, &secret), r1).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["token_type"], "refresh_token");
    assert_eq!(info["scope"], "a");

    let rotated: Value = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", r1)],
            Some((&id, &secret)),
        )
        .await
        .json()
        .await
        .unwrap();
    let r2 = rotated["refresh_token"].as_str().unwrap();
    assert_eq!(
        introspect(app, (&id, &secret), r1).await["active"],
        false,
        "a used token is inactive"
    );
    revoke(app, (&id, &secret), r2).await;
    assert_eq!(introspect(app, (&id, &secret), r2).await["active"], false);
    let refused = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", r2)],
            Some((&id, &secret)),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
}

async fn a_client_cannot_revoke_another_clients_token(app: &TestApp) {
    let owner = app.create_client(&["a"], &[ClientCredentials]).await;
    let stranger = app.create_client(&["a"], &[ClientCredentials]).await;
    let token = access_token(app, (&owner.0, &owner.1)).await;
    revoke(app, (&stranger.0, &stranger.1), &token).await;
    assert_eq!(
        introspect(app, (&owner.0, &owner.1), &token).await["active"],
        true
    );
}

crate::on_both_backends!(
    a_client_introspects_its_own_access_token,
    others_tokens_and_garbage_are_inactive_without_the_introspect_scope,
    introspection_requires_client_authentication_and_a_token,
    a_revoked_access_token_is_inactive_until_it_expires,
    a_revoked_refresh_token_ends_its_whole_family,
    a_client_cannot_revoke_another_clients_token,
);

/// With Redis configured, a revoked access token's jti lands in the sorted set that resource
/// servers poll, scored by the token's expiry.
#[tokio::test]
async fn revocations_reach_the_redis_deny_list() {
    let Some(url) = test_support::redis::reachable_url().await else {
        return;
    };
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let prefix = format!("auth-it-{}", uuid::Uuid::new_v4().simple());
    // The README's name of the set `token-guard` reads: `{QUEUE_PREFIX}:revoked_jti`.
    let key = format!("{prefix}:revoked_jti");
    let db = crate::helpers::TestDb::sqlite();
    let app = TestApp::spawn_with(db, |config| {
        config.redis = Some((url.clone(), prefix.clone()))
    })
    .await;

    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    let token = access_token(&app, (&id, &secret)).await;
    let claims = crate::token::verify(&app, &token).await;
    revoke(&app, (&id, &secret), &token).await;
    let score: Option<i64> = redis::cmd("ZSCORE")
        .arg(&key)
        .arg(claims["jti"].as_str().unwrap())
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(score, claims["exp"].as_i64(), "member = jti, score = exp");
}
