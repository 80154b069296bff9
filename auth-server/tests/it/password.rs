//! `grant_type=password`: user tokens bounded by permissions, no user enumeration, lock-out.

use std::time::Duration;

use auth_server::model::GrantType::{ClientCredentials, Password, RefreshToken};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;
use crate::token::verify;

pub const PASSWORD: &str = "correct horse battery staple";

pub async fn login(
    app: &TestApp,
    client: (&str, &str),
    email: &str,
    password: &str,
    scope: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "password"),
        ("username", email),
        ("password", password),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    app.token(&form, Some(client)).await
}

pub async fn error_of(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn password_grant_issues_user_tokens_within_permissions(app: &TestApp) {
    let (id, secret) = app
        .create_client(&["a", "b", "c"], &[Password, RefreshToken])
        .await;
    let user = app
        .create_user("Ada@Example.com", PASSWORD, &["a", "b", "d"])
        .await;

    let response = login(app, (&id, &secret), "ada@example.com", PASSWORD, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["scope"], "a b",
        "default scope is permissions ∩ client scopes"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["refresh_token"].as_str().unwrap().len() >= 43,
        "≥ 256-bit refresh token"
    );
    let claims = verify(app, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], user.as_str());
    assert_eq!(claims["client_id"], id.as_str());

    let narrowed: Value = login(app, (&id, &secret), "ada@example.com", PASSWORD, Some("b"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(narrowed["scope"], "b");
    for excess in ["c", "d", "a z"] {
        let response = login(
            app,
            (&id, &secret),
            "ada@example.com",
            PASSWORD,
            Some(excess),
        )
        .await;
        assert_eq!(
            error_of(response, StatusCode::BAD_REQUEST).await["error"],
            "invalid_scope",
            "{excess}"
        );
    }
}

async fn a_client_without_refresh_gets_no_refresh_token(app: &TestApp) {
    // The admin rules give every new password client refresh_token; a database written before
    // them may hold one without.
    let (id, secret) = app.create_legacy_client(&["a"], &[Password]).await;
    app.create_user("bo@example.com", PASSWORD, &["a"]).await;
    let body: Value = login(app, (&id, &secret), "bo@example.com", PASSWORD, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(body.get("refresh_token").is_none());
}

async fn unknown_user_and_wrong_password_answer_alike(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    app.create_user("cy@example.com", PASSWORD, &["a"]).await;

    let before = app.tokens.passwords.verifications();
    let wrong = error_of(
        login(
            app,
            (&id, &secret),
            "cy@example.com",
            "wrong password!",
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let unknown = error_of(
        login(app, (&id, &secret), "nobody@example.com", PASSWORD, None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(wrong, unknown, "same error and description");
    assert_eq!(wrong["error"], "invalid_grant");
    assert_eq!(
        app.tokens.passwords.verifications() - before,
        2,
        "the unknown user was verified against the dummy hash too"
    );
}

/// README (Users): an unknown user is verified against a dummy hash made with the same
/// parameters, so it costs the same argon2 work as a known user: every login below, whatever
/// its answer, is one argon2 run of m = 19456 KiB × t = 2 passes and allocates nothing (the
/// work is counted by the pool as it computes, not timed).
async fn an_unknown_user_costs_the_same_argon2_work_as_a_known_one(app: &TestApp) {
    const BLOCKS_PER_RUN: u64 = 19_456 * 2;
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    // As `users create` stores it (the CLI's hash) and as a running server hashes.
    app.create_user("known@example.com", PASSWORD, &["a"]).await;
    let pool = &app.tokens.passwords;
    let server_hash = pool
        .hash(secrecy::SecretString::from(PASSWORD.to_owned()))
        .await
        .unwrap();
    let hashed_here = app
        .create_user("hashed-here@example.com", "placeholder password", &["a"])
        .await;
    app.store
        .set_user_password_hash(&hashed_here, &server_hash)
        .await
        .unwrap();
    let cases = [
        ("known@example.com", PASSWORD, StatusCode::OK),
        (
            "known@example.com",
            "wrong password!",
            StatusCode::BAD_REQUEST,
        ),
        ("hashed-here@example.com", PASSWORD, StatusCode::OK),
        (
            "hashed-here@example.com",
            "wrong password!",
            StatusCode::BAD_REQUEST,
        ),
        ("nobody@example.com", PASSWORD, StatusCode::BAD_REQUEST),
        (
            "nobody@example.com",
            "wrong password!",
            StatusCode::BAD_REQUEST,
        ),
        // A name RFC 8265 refuses is an unknown user too.
        ("a b@example.com", PASSWORD, StatusCode::BAD_REQUEST),
    ];
    for (username, password, status) in cases {
        let before = pool.usage();
        let response = login(app, (&id, &secret), username, password, None).await;
        assert_eq!(response.status(), status, "{username} / {password}");
        let after = pool.usage();
        assert_eq!(
            (
                after.runs - before.runs,
                after.blocks_computed - before.blocks_computed,
                after.kib_allocated - before.kib_allocated,
            ),
            (1, BLOCKS_PER_RUN, 0),
            "{username} / {password}: one argon2 run of the same cost"
        );
    }
}

async fn missing_username_or_password_is_invalid_request(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    for form in [
        vec![("grant_type", "password"), ("username", "x@example.com")],
        vec![("grant_type", "password"), ("password", "x")],
    ] {
        let body = error_of(
            app.token(&form, Some((&id, &secret))).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(body["error"], "invalid_request");
    }
}

async fn disabled_user_is_refused(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    let user = app.create_user("di@example.com", PASSWORD, &["a"]).await;
    app.store.set_user_disabled(&user, true).await.unwrap();
    let body = error_of(
        login(app, (&id, &secret), "di@example.com", PASSWORD, None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
}

async fn a_client_without_the_password_grant_is_unauthorized(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[ClientCredentials]).await;
    app.create_user("ed@example.com", PASSWORD, &["a"]).await;
    let body = error_of(
        login(app, (&id, &secret), "ed@example.com", PASSWORD, None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["error"], "unauthorized_client");
}

/// Five failures lock the account (429 + Retry-After), even for the right password; the lock
/// expires and a successful login then works.
async fn repeated_failures_lock_the_account_until_the_lock_expires(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    app.create_user("fay@example.com", PASSWORD, &["a"]).await;
    for _ in 0..5 {
        let response = login(
            app,
            (&id, &secret),
            "fay@example.com",
            "wrong password!",
            None,
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    let locked = login(app, (&id, &secret), "FAY@example.com", PASSWORD, None).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, 1, "the first lock is the configured 1 s");
    assert_eq!(
        error_of(locked, StatusCode::TOO_MANY_REQUESTS).await["error"],
        "invalid_grant"
    );

    // An unknown account locks the same way (no enumeration through the lock).
    for _ in 0..5 {
        login(
            app,
            (&id, &secret),
            "ghost@example.com",
            "wrong password!",
            None,
        )
        .await;
    }
    assert_eq!(
        login(app, (&id, &secret), "ghost@example.com", "x", None)
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Locks hold through their last whole second: still locked one second on, over the next.
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(
        login(app, (&id, &secret), "fay@example.com", PASSWORD, None)
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a lock lasts at least its configured second"
    );
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(
        login(app, (&id, &secret), "fay@example.com", PASSWORD, None)
            .await
            .status(),
        StatusCode::OK,
        "the 1 s lock is over"
    );
    // The success reset the account: one more failure does not lock it again.
    login(
        app,
        (&id, &secret),
        "fay@example.com",
        "wrong password!",
        None,
    )
    .await;
    assert_eq!(
        login(app, (&id, &secret), "fay@example.com", PASSWORD, None)
            .await
            .status(),
        StatusCode::OK
    );
}

/// RFC 8265: the NFD spelling macOS input methods produce logs into the account created with
/// the NFC spelling and vice versa; case and full-width forms too.
async fn nfd_and_nfc_user_names_reach_the_same_account(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    let nfc_user = app
        .create_user("jos\u{e9}@example.com", PASSWORD, &["a"])
        .await;
    let nfd_user = app
        .create_user("rene\u{301}@example.com", PASSWORD, &["a"])
        .await;
    let cases = [
        ("jose\u{301}@example.com", &nfc_user),
        ("JOSE\u{301}@Example.com", &nfc_user),
        ("\u{ff4a}os\u{e9}@example.com", &nfc_user),
        ("jos\u{e9}@example.com", &nfc_user),
        ("ren\u{e9}@example.com", &nfd_user),
        ("REN\u{c9}@example.com", &nfd_user),
    ];
    for (username, user) in cases {
        let response = login(app, (&id, &secret), username, PASSWORD, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{username:?}");
        let body: Value = response.json().await.unwrap();
        let claims = verify(app, body["access_token"].as_str().unwrap()).await;
        assert_eq!(claims["sub"], user.as_str(), "{username:?}");
    }
}

/// RFC 8265 OpaqueString: a password set in one normalization form is accepted in the other.
async fn nfd_and_nfc_passwords_log_in(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    let nfc = "cr\u{e8}me br\u{fb}l\u{e9}e";
    let nfd = "cre\u{300}me bru\u{302}le\u{301}e";
    app.create_user("nfc-pw@example.com", nfc, &["a"]).await;
    app.create_user("nfd-pw@example.com", nfd, &["a"]).await;
    for (username, password) in [
        ("nfc-pw@example.com", nfd),
        ("nfc-pw@example.com", nfc),
        ("nfd-pw@example.com", nfc),
        ("nfd-pw@example.com", nfd),
    ] {
        assert_eq!(
            login(app, (&id, &secret), username, password, None)
                .await
                .status(),
            StatusCode::OK,
            "{username} with {password:?}"
        );
    }
}

/// A user name RFC 8265 refuses is an unknown user: same answer, one argon2 run. A name with
/// a control character is refused by the request check before any lookup (no account can have
/// it, so answering at once tells nothing about accounts): the same answer, no argon2 run.
async fn a_user_name_precis_refuses_answers_like_an_unknown_user(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    let unknown = error_of(
        login(app, (&id, &secret), "nobody@example.com", PASSWORD, None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    for (refused, verifications) in [
        ("a b@example.com", 1),
        ("ada\u{2603}@example.com", 1),
        ("ada\u{7}@example.com", 0),
    ] {
        let before = app.tokens.passwords.verifications();
        let body = error_of(
            login(app, (&id, &secret), refused, PASSWORD, None).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(body, unknown, "{refused:?}");
        assert_eq!(
            app.tokens.passwords.verifications() - before,
            verifications,
            "{refused:?} argon2 runs"
        );
    }
}

crate::on_both_backends!(
    tweak = |config| config.throttle.base_lock = std::time::Duration::from_secs(1),
    password_grant_issues_user_tokens_within_permissions,
    a_client_without_refresh_gets_no_refresh_token,
    unknown_user_and_wrong_password_answer_alike,
    an_unknown_user_costs_the_same_argon2_work_as_a_known_one,
    missing_username_or_password_is_invalid_request,
    disabled_user_is_refused,
    a_client_without_the_password_grant_is_unauthorized,
    repeated_failures_lock_the_account_until_the_lock_expires,
    nfd_and_nfc_user_names_reach_the_same_account,
    nfd_and_nfc_passwords_log_in,
    a_user_name_precis_refuses_answers_like_an_unknown_user,
);
