//! Lock-out under parallel guesses: every attempt is reserved in the store before its password
//! is verified, so a burst of N guesses against a limit L costs at most L argon2 runs, per
//! account and per source address, also across two server instances on one database.

use std::sync::Arc;
use std::time::Duration;

use auth_server::Application;
use auth_server::config::ServerConfig;
use auth_server::grants::TokenService;
use auth_server::model::GrantType::Password;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;
use crate::password::{PASSWORD, login};

const ACCOUNT_LIMIT: u64 = 5;
const ADDRESS_LIMIT: u64 = 8;
const BURST: usize = 12;

fn tweak(config: &mut ServerConfig) {
    config.throttle.account_threshold = ACCOUNT_LIMIT as i64;
    config.throttle.address_threshold = ADDRESS_LIMIT as i64;
    // Long enough that the lock outlives the burst on a loaded machine.
    config.throttle.base_lock = Duration::from_secs(60);
}

/// What a burst got back: 400s, and 429s (each checked for `Retry-After` and the body).
#[derive(Debug, Default)]
struct Outcome {
    rejected: u64,
    locked: u64,
}

async fn tally(responses: Vec<reqwest::Response>) -> Outcome {
    let mut outcome = Outcome::default();
    for response in responses {
        match response.status() {
            StatusCode::BAD_REQUEST => outcome.rejected += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&retry_after), "{retry_after}");
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"], "invalid_grant");
                outcome.locked += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    outcome
}

/// Sends one password grant per `(base URL, username)` at once, each on its own task, all with
/// `password`; returns the responses.
async fn burst(
    app: &TestApp,
    client: (&str, &str),
    targets: Vec<(String, String)>,
    password: &str,
) -> Vec<reqwest::Response> {
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|(base, username)| {
            let request = app
                .http
                .post(format!("{base}/oauth/token"))
                .form(&[
                    ("grant_type", "password"),
                    ("username", username.as_str()),
                    ("password", password),
                ])
                .basic_auth(client.0, Some(client.1));
            tokio::spawn(request.send())
        })
        .collect();
    let mut responses = Vec::with_capacity(tasks.len());
    for task in tasks {
        responses.push(task.await.unwrap().unwrap());
    }
    responses
}

/// A second server instance on the same database, reading the same clock (as two hosts would
/// read synchronised clocks).
async fn second_instance(
    app: &TestApp,
) -> (String, Arc<TokenService>, tokio::sync::oneshot::Sender<()>) {
    let mut config = TestApp::config(&app.db);
    tweak(&mut config);
    config.clock = app.clock.clone();
    let second = Application::build(config).await.unwrap();
    let base = format!("http://{}", second.local_addr());
    let tokens = second.tokens();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(second.run_until(async move {
        let _ = rx.await;
    }));
    (base, tokens, tx)
}

async fn parallel_wrong_passwords_verify_at_most_the_account_limit(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    app.create_user("par@example.com", PASSWORD, &["a"]).await;
    let before = app.tokens.passwords.verifications();
    let targets = vec![(app.base.clone(), "par@example.com".to_owned()); BURST];
    let outcome = tally(burst(app, (&id, &secret), targets, "wrong password!").await).await;
    let verified = app.tokens.passwords.verifications() - before;
    assert_eq!(verified, ACCOUNT_LIMIT, "{outcome:?}");
    assert_eq!(outcome.rejected, ACCOUNT_LIMIT, "{outcome:?}");
    assert_eq!(outcome.locked, BURST as u64 - ACCOUNT_LIMIT, "{outcome:?}");

    let right = login(app, (&id, &secret), "par@example.com", PASSWORD, None).await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS, "locked");
    assert_eq!(
        app.tokens.passwords.verifications() - before,
        ACCOUNT_LIMIT,
        "a locked account is not verified"
    );
}

async fn parallel_guesses_from_one_address_verify_at_most_its_limit(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    app.create_user("addr@example.com", PASSWORD, &["a"]).await;
    let before = app.tokens.passwords.verifications();
    let targets = (0..BURST)
        .map(|i| (app.base.clone(), format!("guess{i}@example.com")))
        .collect();
    let outcome = tally(burst(app, (&id, &secret), targets, "wrong password!").await).await;
    let verified = app.tokens.passwords.verifications() - before;
    assert_eq!(verified, ADDRESS_LIMIT, "{outcome:?}");
    assert_eq!(outcome.rejected, ADDRESS_LIMIT, "{outcome:?}");
    assert_eq!(outcome.locked, BURST as u64 - ADDRESS_LIMIT, "{outcome:?}");
    // The address is locked for every account, the right password included.
    assert_eq!(
        login(app, (&id, &secret), "addr@example.com", PASSWORD, None)
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A success takes back its own reservation on the address but clears nothing else there.
async fn a_success_neither_counts_nor_clears_the_address(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    app.create_user("ok@example.com", PASSWORD, &["a"]).await;
    for i in 0..ADDRESS_LIMIT - 1 {
        let name = format!("miss{i}@example.com");
        let response = login(app, (&id, &secret), &name, "wrong password!", None).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    let ok = login(app, (&id, &secret), "ok@example.com", PASSWORD, None).await;
    assert_eq!(
        ok.status(),
        StatusCode::OK,
        "failure {} of {ADDRESS_LIMIT} not reached",
        ADDRESS_LIMIT - 1
    );
    let last = login(
        app,
        (&id, &secret),
        "miss@example.com",
        "wrong password!",
        None,
    )
    .await;
    assert_eq!(
        last.status(),
        StatusCode::BAD_REQUEST,
        "the success did not count"
    );
    let locked = login(app, (&id, &secret), "ok@example.com", PASSWORD, None).await;
    assert_eq!(
        locked.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the success did not clear the address's failures"
    );
}

async fn two_instances_share_one_account_limit(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    app.create_user("two@example.com", PASSWORD, &["a"]).await;
    let (second_base, second_tokens, _shutdown) = second_instance(app).await;
    let before = app.tokens.passwords.verifications() + second_tokens.passwords.verifications();
    let targets = (0..BURST)
        .map(|i| {
            let base = if i % 2 == 0 { &app.base } else { &second_base };
            (base.clone(), "two@example.com".to_owned())
        })
        .collect();
    let outcome = tally(burst(app, (&id, &secret), targets, "wrong password!").await).await;
    let verified =
        app.tokens.passwords.verifications() + second_tokens.passwords.verifications() - before;
    assert_eq!(verified, ACCOUNT_LIMIT, "{outcome:?}");
    assert_eq!(outcome.locked, BURST as u64 - ACCOUNT_LIMIT, "{outcome:?}");
}

/// Counters and locks live in the database, not in a server's memory: failures counted by one
/// instance count on a freshly started one, and the lock it sets holds on a third.
async fn counters_and_locks_survive_a_restart(app: &TestApp) {
    let (id, secret) = app.create_client(&["a"], &[Password]).await;
    app.create_user("rst@example.com", PASSWORD, &["a"]).await;
    let wrong = |base: String| (base, "rst@example.com".to_owned());
    let first = vec![wrong(app.base.clone()); ACCOUNT_LIMIT as usize - 1];
    let outcome = tally(burst(app, (&id, &secret), first, "wrong password!").await).await;
    assert_eq!(outcome.rejected, ACCOUNT_LIMIT - 1, "{outcome:?}");
    let (restarted, _, stop_restarted) = second_instance(app).await;
    let last = vec![wrong(restarted.clone())];
    let outcome = tally(burst(app, (&id, &secret), last, "wrong password!").await).await;
    assert_eq!(outcome.rejected, 1, "the limit's last failure: {outcome:?}");
    drop(stop_restarted);
    let (third, _, _stop_third) = second_instance(app).await;
    let right = vec![(third, "rst@example.com".to_owned())];
    let outcome = tally(burst(app, (&id, &secret), right, PASSWORD).await).await;
    assert_eq!(
        outcome.locked, 1,
        "locked on an instance started after: {outcome:?}"
    );
}

crate::on_both_backends!(
    tweak = super::tweak,
    parallel_wrong_passwords_verify_at_most_the_account_limit,
    parallel_guesses_from_one_address_verify_at_most_its_limit,
    a_success_neither_counts_nor_clears_the_address,
    two_instances_share_one_account_limit,
    counters_and_locks_survive_a_restart,
);
