//! README (Revocation reach): "a login whose user was reset, disabled or deleted while its
//! password was being verified is refused, and a refresh racing its login's revocation issues
//! nothing". Each race is driven in a fixed order, not timed: the server's checkpoint gate holds
//! the grant between its checks and its answer, the admin CLI (the real binary, on the same
//! database) or `/oauth/revoke` ends the user or the login meanwhile, then the grant goes on.

use std::io::Write;
use std::process::Stdio;

use auth_server::grants::checkpoint::Checkpoint;
use auth_server::model::FamilyOwner;
use auth_server::model::GrantType::{Password, RefreshToken};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;
use crate::introspection::introspect;
use crate::password::{PASSWORD, error_of, login};

/// Runs the admin CLI binary on the app's database as an operator would (store only, no
/// Redis), off the runtime's thread; returns its JSON output.
pub async fn admin(app: &TestApp, args: &[&str], stdin: &str) -> Value {
    let mut command = crate::cli::command(&app.db, args);
    command
        .arg("--json")
        .env_remove("REDIS_URL")
        .env_remove("QUEUE_PREFIX")
        .env_remove("ACCESS_TOKEN_TTL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let input = stdin.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    crate::cli::json(&output)
}

/// A password login held after its password matched the user record it read first; the CLI
/// resets, disables or deletes the user; the login then answers `invalid_grant` and starts no
/// session. Held with nothing in between, the same login succeeds.
async fn a_login_whose_user_changed_while_its_password_was_verified_is_refused(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password, RefreshToken]).await;
    let client = (id.as_str(), secret.as_str());
    let events: [&[&str]; 3] = [
        &["users", "reset-password"],
        &["users", "disable"],
        &["users", "delete"],
    ];
    for (i, event) in events.into_iter().enumerate() {
        let email = format!("race-{i}@example.com");
        let user = app.create_user(&email, PASSWORD, &["a"]).await;
        app.gate.hold_next(Checkpoint::PasswordVerified);
        let (response, ()) = tokio::join!(login(app, client, &email, PASSWORD, None), async {
            app.gate.wait_until_held().await;
            let mut args = event.to_vec();
            args.push(&user);
            admin(app, &args, "a completely new passphrase\n").await;
            app.gate.release();
        });
        let body = error_of(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["error"], "invalid_grant", "{event:?}: {body}");
        assert!(body.get("access_token").is_none(), "{event:?}");
        let sessions = app
            .store
            .revoke_refresh_families(FamilyOwner::User(&user), time::OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert_eq!(sessions, 0, "{event:?}: no session was started");
    }

    let user = app
        .create_user("unraced@example.com", PASSWORD, &["a"])
        .await;
    app.gate.hold_next(Checkpoint::PasswordVerified);
    let (response, ()) = tokio::join!(
        login(app, client, "unraced@example.com", PASSWORD, None),
        async {
            app.gate.wait_until_held().await;
            app.gate.release();
        }
    );
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "held alone, {user} logs in"
    );
}

/// A refresh held after its token was found live (and its access token signed), before the
/// rotation; the login is revoked meanwhile (`/oauth/revoke` of that refresh token,
/// `tokens revoke --user`, `users disable`); the refresh then gets the answer of an unknown
/// token (no reuse is reported), nothing is rotated or stored, and the login's access token is
/// inactive. Held with nothing in between, the same refresh succeeds.
async fn a_refresh_racing_its_logins_revocation_issues_nothing(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password, RefreshToken]).await;
    let client = (id.as_str(), secret.as_str());
    let refresh = |token: String| async move {
        app.token(
            &[("grant_type", "refresh_token"), ("refresh_token", &token)],
            Some(client),
        )
        .await
    };
    let unknown = error_of(
        refresh("no-such-refresh-token".to_owned()).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let sign_in = |email: String| async move {
        let response = login(app, client, &email, PASSWORD, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["refresh_token"].as_str().unwrap().to_owned(),
        )
    };

    let events = ["/oauth/revoke", "tokens revoke --user", "users disable"];
    for (i, event) in events.into_iter().enumerate() {
        let email = format!("refresh-race-{i}@example.com");
        let user = app.create_user(&email, PASSWORD, &["a"]).await;
        let (access_token, refresh_token) = sign_in(email).await;
        app.gate.hold_next(Checkpoint::RefreshChecked);
        let (response, ()) = tokio::join!(refresh(refresh_token.clone()), async {
            app.gate.wait_until_held().await;
            match event {
                "/oauth/revoke" => {
                    let revoked = app
                        .post_form("/oauth/revoke", &[("token", &refresh_token)], client)
                        .await;
                    assert_eq!(revoked.status(), StatusCode::OK);
                }
                "tokens revoke --user" => {
                    admin(app, &["tokens", "revoke", "--user", &user], "").await;
                }
                _ => {
                    admin(app, &["users", "disable", &user], "").await;
                }
            }
            app.gate.release();
        });
        let body = error_of(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(body, unknown, "{event}: answered like an unknown token");
        let lookup = app
            .tokens
            .refresh
            .find(&refresh_token)
            .await
            .unwrap()
            .unwrap();
        assert!(lookup.family.revoked_at.is_some(), "{event}");
        assert!(
            lookup.token.used_at.is_none() && lookup.successor.is_none(),
            "{event}: nothing was rotated or stored"
        );
        assert_eq!(
            introspect(app, client, &access_token).await["active"],
            false,
            "{event}: the login's access token ended with it"
        );
    }

    app.create_user("unraced-refresh@example.com", PASSWORD, &["a"])
        .await;
    let (_, refresh_token) = sign_in("unraced-refresh@example.com".to_owned()).await;
    app.gate.hold_next(Checkpoint::RefreshChecked);
    let (response, ()) = tokio::join!(refresh(refresh_token), async {
        app.gate.wait_until_held().await;
        app.gate.release();
    });
    assert_eq!(response.status(), StatusCode::OK, "held alone, it rotates");
}

crate::on_both_backends!(
    a_login_whose_user_changed_while_its_password_was_verified_is_refused,
    a_refresh_racing_its_logins_revocation_issues_nothing,
);
