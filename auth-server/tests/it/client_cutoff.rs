//! README (Revocation reach): "a disabled or deleted client's cutoff lies 2 s ahead, covering
//! what servers still issue from their client cache". The server's clock (the age of its cached
//! client records) and the clock its tokens are stamped with are one `ManualClock` here, set to
//! a wall-clock millisecond just before the CLI's change; the cutoff the CLI writes is wall-clock
//! time after that. So the token a server signs in the cache's last millisecond lands exactly
//! where the test puts it, and a time rule is tested by moving the clock, not by waiting.

use std::time::Duration;

use auth_server::grants::INTROSPECT_SCOPE;
use auth_server::grants::checkpoint::Checkpoint;
use auth_server::grants::client_auth::CLIENT_CACHE_TTL;
use auth_server::model::GrantType::{ClientCredentials, Password};
use reqwest::StatusCode;
use serde_json::Value;
use time::OffsetDateTime;
use token_guard::CutoffKind;

use crate::helpers::TestApp;
use crate::introspection::introspect;
use crate::password::{PASSWORD, login};
use crate::races::admin;
use crate::token::{assert_oauth_error, verify};

const CC: (&str, &str) = ("grant_type", "client_credentials");
const ONE_MS: Duration = Duration::from_millis(1);

/// The wall clock, to the millisecond.
fn wall_clock_ms() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap()
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap()
}

/// The cutoff (unix ms) the store holds for `client_id`.
async fn client_cutoff_ms(app: &TestApp, client_id: &str) -> i64 {
    app.store
        .revoked_subjects(OffsetDateTime::now_utc().unix_timestamp())
        .await
        .unwrap()
        .into_iter()
        .find(|cutoff| matches!(cutoff.kind, CutoffKind::Client) && cutoff.subject == client_id)
        .expect("the client has a cutoff")
        .not_before_ms
}

/// The issue time (unix ms) a token carries in its `jti`, as every verifier reads it.
async fn issued_ms(app: &TestApp, token: &str) -> i64 {
    let claims = verify(app, token).await;
    let iat = claims["iat"].as_u64().unwrap();
    i64::try_from(token_guard::issued_at_ms(
        claims["jti"].as_str().unwrap(),
        iat,
    ))
    .unwrap()
}

/// The client record is read (cache warmed) at `read_at`; `clients disable|delete` follows; at
/// `read_at` + 2 s − 1 ms, the cache's last millisecond, the server still issues a token from
/// the record, and that token lies at or before the cutoff, so introspection calls it
/// inactive. At `read_at` + 2 s the server reads the change and refuses the client.
async fn the_last_token_issued_from_the_client_cache_after_disable_or_delete_is_refused(
    app: &TestApp,
) {
    assert_eq!(CLIENT_CACHE_TTL, Duration::from_secs(2));
    let (introspector, introspector_secret) = app
        .create_client(&[INTROSPECT_SCOPE], &[ClientCredentials])
        .await;
    for event in ["disable", "delete"] {
        let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
        let read_at = wall_clock_ms();
        app.clock.set(read_at);
        let warm = app.token(&[CC], Some((&id, &secret))).await;
        assert_eq!(warm.status(), StatusCode::OK, "{event}");

        admin(app, &["clients", event, &id], "").await;
        let cutoff = client_cutoff_ms(app, &id).await;
        assert!(
            cutoff >= unix_ms(read_at) + 2_000,
            "{event}: the cutoff ({cutoff}) lies the cache's 2 s after the record was read ({})",
            unix_ms(read_at)
        );

        app.clock.set(read_at + CLIENT_CACHE_TTL - ONE_MS);
        let stale = app.token(&[CC], Some((&id, &secret))).await;
        assert_eq!(
            stale.status(),
            StatusCode::OK,
            "{event}: still served from the cache"
        );
        let body: Value = stale.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap();
        let issued = issued_ms(app, token).await;
        assert_eq!(issued, unix_ms(read_at) + 1_999, "{event}");
        assert!(issued <= cutoff, "{event}: {issued} > {cutoff}");
        let info = introspect(app, (&introspector, &introspector_secret), token).await;
        assert_eq!(info["active"], false, "{event}: {info}");

        app.clock.set(read_at + CLIENT_CACHE_TTL);
        let refused = app.token(&[CC], Some((&id, &secret))).await;
        assert_oauth_error(refused, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
}

/// A login whose client record was read at `read_at` is held after its password was verified
/// while the client is disabled. Released within the record's 2 s, it gets a token that the
/// cutoff covers; released at 2 s, the server reads the record again before answering and
/// refuses the client: a grant that outlives its record (a login queued for a hashing thread)
/// never answers with a token past the cutoff.
async fn a_grant_that_outlives_its_client_record_reads_it_again(app: &TestApp) {
    let (introspector, introspector_secret) = app
        .create_client(&[INTROSPECT_SCOPE], &[ClientCredentials])
        .await;
    app.create_user("held@example.com", PASSWORD, &["a"]).await;
    for held_for in [CLIENT_CACHE_TTL - ONE_MS, CLIENT_CACHE_TTL] {
        let (id, secret) = app.create_client(&["a"], &[Password]).await;
        let read_at = wall_clock_ms();
        app.clock.set(read_at);
        app.gate.hold_next(Checkpoint::PasswordVerified);
        let (response, ()) = tokio::join!(
            login(app, (&id, &secret), "held@example.com", PASSWORD, None),
            async {
                app.gate.wait_until_held().await;
                admin(app, &["clients", "disable", &id], "").await;
                app.clock.set(read_at + held_for);
                app.gate.release();
            }
        );
        let cutoff = client_cutoff_ms(app, &id).await;
        assert!(cutoff >= unix_ms(read_at) + 2_000, "{cutoff}");
        if held_for < CLIENT_CACHE_TTL {
            assert_eq!(response.status(), StatusCode::OK, "held for {held_for:?}");
            let body: Value = response.json().await.unwrap();
            let token = body["access_token"].as_str().unwrap();
            let issued = issued_ms(app, token).await;
            assert!(issued <= cutoff, "{issued} > {cutoff}");
            let info = introspect(app, (&introspector, &introspector_secret), token).await;
            assert_eq!(info["active"], false, "{info}");
        } else {
            assert_oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
        }
    }
}

crate::on_both_backends!(
    tweak = |config| config.token_clock = config.clock.clone(),
    the_last_token_issued_from_the_client_cache_after_disable_or_delete_is_refused,
    a_grant_that_outlives_its_client_record_reads_it_again,
);
