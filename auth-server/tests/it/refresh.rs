//! `grant_type=refresh_token`: single use, rotation, reuse detection, the grace window,
//! concurrent refreshes, scope narrowing, revocation by user state.

use auth_server::model::FamilyOwner;
use auth_server::model::GrantType::{Password, RefreshToken};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;
use crate::password::{PASSWORD, login};

struct Session {
    client: (String, String),
    user: String,
    refresh_token: String,
}

async fn start(app: &TestApp, email: &str) -> Session {
    let client = app
        .create_client(&["a", "b"], &[Password, RefreshToken])
        .await;
    let user = app.create_user(email, PASSWORD, &["a", "b"]).await;
    let body: Value = login(app, (&client.0, &client.1), email, PASSWORD, None)
        .await
        .json()
        .await
        .unwrap();
    Session {
        client,
        user,
        refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

async fn refresh(
    app: &TestApp,
    session: &Session,
    token: &str,
    scope: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    app.token(&form, Some((&session.client.0, &session.client.1)))
        .await
}

async fn ok(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn invalid_grant(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(app: &TestApp) {
    let session = start(app, "rot@example.com").await;
    let r1 = session.refresh_token.clone();
    let first = ok(refresh(app, &session, &r1, None).await).await;
    let r2 = first["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r2, r1, "each use returns a new refresh token");
    assert_eq!(first["scope"], "a b");
    let claims = crate::token::verify(app, first["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], session.user.as_str());
    let r3 = ok(refresh(app, &session, &r2, None).await).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // r1 is two generations old: presenting it is theft, and the whole family dies.
    invalid_grant(refresh(app, &session, &r1, None).await).await;
    invalid_grant(refresh(app, &session, &r3, None).await).await;
}

async fn unknown_or_foreign_refresh_tokens_are_invalid_grant(app: &TestApp) {
    let session = start(app, "for@example.com").await;
    invalid_grant(refresh(app, &session, "not-a-token", None).await).await;
    let other = app.create_client(&["a"], &[RefreshToken]).await;
    let stolen = app
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &session.refresh_token),
            ],
            Some((&other.0, &other.1)),
        )
        .await;
    invalid_grant(stolen).await;
    // The owner can still use it: a foreign client's attempt is not a use.
    ok(refresh(app, &session, &session.refresh_token, None).await).await;
}

async fn the_previous_token_gets_the_same_successor_within_the_grace_period(app: &TestApp) {
    let session = start(app, "gra@example.com").await;
    let r2 = ok(refresh(app, &session, &session.refresh_token, None).await).await["refresh_token"]
        .clone();
    let again = ok(refresh(app, &session, &session.refresh_token, None).await).await;
    assert_eq!(
        again["refresh_token"], r2,
        "same successor, so the app is not logged out"
    );
    // The family is intact: the successor works.
    ok(refresh(app, &session, r2.as_str().unwrap(), None).await).await;
}

/// Once the grace period has passed on the server's clock, the previous token is reuse: the
/// family is revoked, the successor with it.
async fn the_previous_token_is_reuse_once_the_grace_period_has_passed(app: &TestApp) {
    let session = start(app, "gpa@example.com").await;
    let r2 = ok(refresh(app, &session, &session.refresh_token, None).await).await["refresh_token"]
        .clone();
    // The configured (default) grace is 2 s; a moment past it the previous token is reuse.
    app.clock
        .advance(std::time::Duration::from_secs(2) + std::time::Duration::from_millis(1));
    invalid_grant(refresh(app, &session, &session.refresh_token, None).await).await;
    invalid_grant(refresh(app, &session, r2.as_str().unwrap(), None).await).await;
}

/// The server's clock stands still (a `ManualClock`), so the eight requests fall within the
/// grace period however long the machine takes to serve them.
async fn concurrent_refreshes_all_succeed_with_one_successor(app: &TestApp) {
    let session = start(app, "con@example.com").await;
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let request = app
                .http
                .post(app.url("/oauth/token"))
                .basic_auth(&session.client.0, Some(&session.client.1))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", session.refresh_token.as_str()),
                ]);
            tokio::spawn(request.send())
        })
        .collect();
    let mut successors = Vec::new();
    for call in calls {
        successors.push(
            ok(call.await.unwrap().unwrap()).await["refresh_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    successors.dedup();
    assert_eq!(
        successors.len(),
        1,
        "every concurrent refresh got the same successor"
    );
    ok(refresh(app, &session, &successors[0], None).await).await;
}

async fn scope_may_be_narrowed_never_widened(app: &TestApp) {
    let session = start(app, "nar@example.com").await;
    let narrowed = ok(refresh(app, &session, &session.refresh_token, Some("a")).await).await;
    assert_eq!(narrowed["scope"], "a");
    let next = narrowed["refresh_token"].as_str().unwrap().to_owned();
    app.create_scopes(&["c"]).await;
    let widened = refresh(app, &session, &next, Some("a c")).await;
    assert_eq!(widened.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        widened.json::<Value>().await.unwrap()["error"],
        "invalid_scope"
    );
    // A refused scope does not consume the token; the login's full scope is still available.
    assert_eq!(
        ok(refresh(app, &session, &next, None).await).await["scope"],
        "a b"
    );
}

async fn disabled_users_and_revoked_sessions_cannot_refresh(app: &TestApp) {
    let session = start(app, "dis@example.com").await;
    app.store
        .set_user_disabled(&session.user, true)
        .await
        .unwrap();
    invalid_grant(refresh(app, &session, &session.refresh_token, None).await).await;

    let session = start(app, "rev@example.com").await;
    let revoked = app
        .store
        .revoke_refresh_families(
            FamilyOwner::User(&session.user),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    invalid_grant(refresh(app, &session, &session.refresh_token, None).await).await;
}

crate::on_both_backends!(
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    unknown_or_foreign_refresh_tokens_are_invalid_grant,
    the_previous_token_gets_the_same_successor_within_the_grace_period,
    the_previous_token_is_reuse_once_the_grace_period_has_passed,
    concurrent_refreshes_all_succeed_with_one_successor,
    scope_may_be_narrowed_never_widened,
    disabled_users_and_revoked_sessions_cannot_refresh,
);

/// Without a grace period, presenting the previous token at once is reuse.
mod no_grace {
    use super::*;

    async fn reuse_right_after_rotation_revokes_without_grace(app: &TestApp) {
        let session = start(app, "nog@example.com").await;
        let r2 =
            ok(refresh(app, &session, &session.refresh_token, None).await).await["refresh_token"]
                .clone();
        invalid_grant(refresh(app, &session, &session.refresh_token, None).await).await;
        invalid_grant(refresh(app, &session, r2.as_str().unwrap(), None).await).await;
    }

    crate::on_both_backends!(
        tweak = |config| config.refresh_grace = std::time::Duration::ZERO,
        reuse_right_after_rotation_revokes_without_grace,
    );
}
