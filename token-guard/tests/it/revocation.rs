//! The Redis deny-list (`{prefix}:revoked_jti`, score = exp): a ZADD reaches the guard within
//! 5 s, expired entries are ignored, and the last known list survives a Redis outage (also
//! through a URL with a password and a database number). Skipped with a message when Redis is
//! unreachable, unless CI is on (`test_support::ci::in_ci`).

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use test_support::net::TcpProxy;
use test_support::redis::OwnRedis;
use token_guard::{
    RedisRevocationConfig, RedisRevocationList, RevocationList, RevocationSubject, TokenGuard,
};
use uuid::Uuid;

use crate::helpers::{
    AuthServer, ProtectedApp, READ, assert_invalid_token, eventually, guard_config, now, payload,
};

/// The test Redis's URL and a connection to it, or `None` (with a message) when it is
/// unreachable outside CI; in CI the test fails.
async fn redis_or_skip() -> Option<(String, redis::aio::MultiplexedConnection)> {
    let url = test_support::redis::reachable_url().await?;
    let client = redis::Client::open(url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    Some((url, conn))
}

/// A token known by its jti only (its sub and client carry no cutoff).
fn by_jti(jti: &str) -> RevocationSubject<'_> {
    RevocationSubject::new(jti, "nobody", "no-client", 0)
}

fn random_prefix() -> String {
    format!("guardtest:{}", Uuid::new_v4().simple())
}

async fn revoke(conn: &mut redis::aio::MultiplexedConnection, key: &str, jti: &str, exp: i64) {
    let _: () = conn.zadd(key, jti, exp).await.unwrap();
    // Safety net should the test die before its cleanup.
    let _: () = conn.expire(key, 300).await.unwrap();
}

#[tokio::test]
async fn a_redis_revocation_reaches_the_guard_within_5_seconds() {
    let Some((url, mut conn)) = redis_or_skip().await else {
        return;
    };
    let prefix = random_prefix();
    let list = RedisRevocationList::connect(RedisRevocationConfig::new(&url).with_prefix(&prefix))
        .await
        .unwrap();
    assert_eq!(list.key(), format!("{prefix}:revoked_jti"));
    let auth = AuthServer::spawn().await;
    let guard = TokenGuard::new(guard_config(&auth, &auth.jwks_url()), Arc::new(list))
        .await
        .unwrap();
    let app = ProtectedApp::spawn(guard).await;
    let token = auth.token(&[READ]).await;
    assert_eq!(app.get("/me", &token).await.status(), 200);
    assert_eq!(app.get("/me", &token).await.status(), 200, "now cached");

    let claims = payload(&token);
    let key = format!("{prefix}:revoked_jti");
    revoke(
        &mut conn,
        &key,
        claims["jti"].as_str().unwrap(),
        claims["exp"].as_i64().unwrap(),
    )
    .await;
    let took = eventually(Duration::from_secs(5), || async {
        app.get("/me", &token).await.status() == 401
    })
    .await
    .expect("revocation seen within 5 s");
    eprintln!("revocation reached the guard after {took:?}");
    assert_eq!(
        assert_invalid_token(app.get("/me", &token).await).await,
        "the token has been revoked"
    );
    assert_eq!(
        app.get("/me", &auth.token(&[READ]).await).await.status(),
        200
    );
    let _: () = conn.del(&key).await.unwrap();
}

/// A "not valid before" cutoff (`sub:<ms>:<sub>`, `client:<ms>:<client_id>`) ends the tokens
/// issued up to it, including tokens whose jti is not a UUIDv7 (judged by `iat`), and spares
/// tokens issued after it.
#[tokio::test]
async fn a_cutoff_in_redis_ends_earlier_tokens_of_its_subject_only() {
    let Some((url, mut conn)) = redis_or_skip().await else {
        return;
    };
    let prefix = random_prefix();
    let key = format!("{prefix}:revoked_jti");
    let list = RedisRevocationList::connect(RedisRevocationConfig::new(&url).with_prefix(&prefix))
        .await
        .unwrap();
    let auth = AuthServer::spawn().await;
    let guard = TokenGuard::new(guard_config(&auth, &auth.jwks_url()), Arc::new(list))
        .await
        .unwrap();
    let app = ProtectedApp::spawn(guard).await;
    let client = auth.client(&[READ]).await;
    let issued = auth.client_token(&client).await;
    let sub = payload(&issued)["sub"].as_str().unwrap().to_owned();
    let legacy = auth.sign_claims(&auth.claims(serde_json::json!({
        "jti": "not-a-uuid-v7", "client_id": "legacy-client", "iat": now() - 5,
    })));
    for token in [&issued, &legacy] {
        assert_eq!(app.get("/me", token).await.status(), 200);
    }

    let cutoff_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    for member in [
        format!("sub:{cutoff_ms}:{sub}"),
        format!("client:{cutoff_ms}:legacy-client"),
    ] {
        revoke(&mut conn, &key, &member, now() + 600).await;
    }
    for token in [&issued, &legacy] {
        eventually(Duration::from_secs(5), || async {
            app.get("/me", token).await.status() == 401
        })
        .await
        .expect("cutoff seen within 5 s");
        assert_eq!(
            assert_invalid_token(app.get("/me", token).await).await,
            "the token has been revoked"
        );
    }
    // Issued after the cutoff: its UUIDv7 jti carries a later ms.
    let later = auth.client_token(&client).await;
    assert_eq!(payload(&later)["sub"], sub.as_str(), "the same subject");
    assert_eq!(app.get("/me", &later).await.status(), 200);
    let _: () = conn.del(&key).await.unwrap();
}

#[tokio::test]
async fn expired_revocations_are_not_loaded() {
    let Some((url, mut conn)) = redis_or_skip().await else {
        return;
    };
    let prefix = random_prefix();
    let key = format!("{prefix}:revoked_jti");
    revoke(&mut conn, &key, "long-gone", now() - 3600).await;
    revoke(&mut conn, &key, "inside-leeway", now() - 30).await;
    revoke(&mut conn, &key, "live", now() + 600).await;
    let list = RedisRevocationList::connect(RedisRevocationConfig::new(&url).with_prefix(&prefix))
        .await
        .unwrap();
    assert!(!list.is_revoked(&by_jti("long-gone")));
    assert!(list.is_revoked(&by_jti("inside-leeway")));
    assert!(list.is_revoked(&by_jti("live")));
    assert_eq!(list.reload().await.unwrap(), 2);
    let _: () = conn.del(&key).await.unwrap();
}

#[tokio::test]
async fn bad_settings_are_refused() {
    for (prefix, every) in [("", 1), ("has space", 1), ("ok", 0), ("ok", 5)] {
        let mut config =
            RedisRevocationConfig::new(test_support::redis::configured_url()).with_prefix(prefix);
        config.poll_interval = Duration::from_secs(every);
        let err = RedisRevocationList::connect(config).await.unwrap_err();
        assert!(err.to_string().contains("settings"), "{err}");
    }
}

/// The outage scenario against the Redis that `upstream` names: the guard reads through a
/// proxy that is cut and restored; the test writes to Redis directly.
async fn the_last_known_list_survives_an_outage_of(upstream: &str) {
    let Some((proxy, proxy_url)) = TcpProxy::in_front_of(upstream).await else {
        let _: Option<()> = test_support::ci::skip_unless_ci(&format!(
            "the outage test proxies redis:// URLs only, not {}",
            url::Url::parse(upstream).unwrap().scheme()
        ));
        return;
    };
    let mut conn = redis::Client::open(upstream)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = random_prefix();
    let key = format!("{prefix}:revoked_jti");
    revoke(&mut conn, &key, "before-outage", now() + 600).await;
    let list =
        RedisRevocationList::connect(RedisRevocationConfig::new(&proxy_url).with_prefix(&prefix))
            .await
            .unwrap();
    assert!(list.is_revoked(&by_jti("before-outage")));

    proxy.cut();
    assert!(list.reload().await.is_err(), "Redis is unreachable");
    assert!(
        list.is_revoked(&by_jti("before-outage")),
        "last known list kept"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // let the poller fail too
    assert!(list.is_revoked(&by_jti("before-outage")));

    proxy.restore();
    revoke(&mut conn, &key, "after-outage", now() + 600).await;
    let seen = eventually(Duration::from_secs(15), || {
        let list = list.clone();
        async move { list.is_revoked(&by_jti("after-outage")) }
    })
    .await;
    assert!(seen.is_some(), "polling resumes after the outage");
    assert!(list.is_revoked(&by_jti("before-outage")));
    let _: () = conn.del(&key).await.unwrap();
}

#[tokio::test]
async fn the_last_known_list_survives_a_redis_outage() {
    let Some((url, _)) = redis_or_skip().await else {
        return;
    };
    the_last_known_list_survives_an_outage_of(&url).await;
}

/// The same scenario through `redis://:<password>@host:port/3`, on a `redis-server` of the
/// test's own that requires the password, so such a `REDIS_URL` is no reason to skip.
#[tokio::test]
async fn the_outage_scenario_runs_with_a_password_and_a_database_number() {
    let Some(server) = OwnRedis::start(Some("outage-test-password")).await else {
        return;
    };
    let anonymous = server.url().replace(":outage-test-password@", "");
    let refused = async {
        let client = redis::Client::open(anonymous.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    assert!(refused.await.is_err(), "the server requires the password");
    the_last_known_list_survives_an_outage_of(&format!("{}/3", server.url())).await;
}
