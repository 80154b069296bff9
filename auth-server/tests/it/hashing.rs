//! The password hashing pool seen from outside: a saturated pool answers 503
//! `temporarily_unavailable` with `Retry-After` instead of queueing, and its argon2 memory is one
//! 19 MiB buffer per thread however many logins arrive. The pool is held with
//! `PasswordPool::hold_a_thread` and its memory read from the counters it keeps
//! (`PasswordPool::usage`), so nothing here depends on how fast the machine hashes.

use std::time::Duration;

use auth_server::model::GrantType::{ClientCredentials, Password};
use reqwest::StatusCode;

use crate::helpers::TestApp;
use crate::password::{PASSWORD, error_of, login};

/// The README's argon2id memory cost: m = 19456 KiB (19 MiB), one 1 KiB block per KiB.
const M_COST_KIB: u64 = 19_456;

/// Polls `condition` every 10 ms for up to 60 s.
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

mod saturated {
    use super::*;

    /// README (HTTP, Users): with its `PASSWORD_HASH_THREADS` busy and `PASSWORD_HASH_QUEUE`
    /// logins waiting, a further login gets 503 `temporarily_unavailable` with `Retry-After` at
    /// once, while client_credentials tokens are still issued; the waiting login completes once
    /// a thread is free.
    async fn a_saturated_hashing_pool_answers_503_temporarily_unavailable_with_retry_after(
        app: &TestApp,
    ) {
        let (id, secret) = app
            .create_client(&["a"], &[Password, ClientCredentials])
            .await;
        let client = (id.as_str(), secret.as_str());
        app.create_user("busy@example.com", PASSWORD, &["a"]).await;
        let pool = &app.tokens.passwords;
        let held = pool.hold_a_thread().await.unwrap();
        assert_eq!(pool.in_flight(), 1, "the only thread is held");

        let waiting = login(app, client, "busy@example.com", PASSWORD, None);
        let refused = async {
            wait_for("the second login waits in the queue", || {
                pool.in_flight() == 2
            })
            .await;
            // Refused at once: a login queued instead would wait for the held thread forever.
            let response = tokio::time::timeout(
                Duration::from_secs(60),
                login(app, client, "busy@example.com", PASSWORD, None),
            )
            .await
            .expect("the third login is answered, not queued");
            assert_eq!(
                response.headers()["retry-after"],
                "1",
                "Retry-After in seconds"
            );
            let body = error_of(response, StatusCode::SERVICE_UNAVAILABLE).await;
            // A 5xx answer carries no description (RFC 6749 §5.2 makes it optional).
            assert_eq!(
                body,
                serde_json::json!({"error": "temporarily_unavailable"})
            );
            let issued = app
                .token(&[("grant_type", "client_credentials")], Some(client))
                .await;
            assert_eq!(
                issued.status(),
                StatusCode::OK,
                "a saturated pool does not starve token issuance"
            );
            drop(held);
        };
        let (waiting, ()) = tokio::join!(waiting, refused);
        assert_eq!(
            waiting.status(),
            StatusCode::OK,
            "the queued login is verified once the thread is free"
        );
        wait_for("the pool is idle again", || pool.in_flight() == 0).await;
        let after = login(app, client, "busy@example.com", PASSWORD, None).await;
        assert_eq!(
            after.status(),
            StatusCode::OK,
            "the refusal was not a failure"
        );
    }

    crate::on_both_backends!(
        tweak = |config| {
            config.password_hash_threads = 1;
            config.password_hash_queue = 1;
        },
        a_saturated_hashing_pool_answers_503_temporarily_unavailable_with_retry_after,
    );
}

mod memory {
    use super::*;

    use argon2::password_hash::{PasswordHasher, SaltString};
    use argon2::{Algorithm, Argon2, Params, Version};

    const THREADS: usize = 2;
    const LOGINS: usize = 30;

    /// README (Users): each of the `PASSWORD_HASH_THREADS` hashing threads allocates its 19 MiB
    /// of argon2 memory once, so 30 logins at once (right and wrong passwords, unknown users)
    /// and new hashes on 2 threads leave the pool's allocations at 2 × 19456 KiB, made when it
    /// started.
    async fn hashing_memory_is_one_19_mib_buffer_per_thread_whatever_the_login_rate(app: &TestApp) {
        let client = app.create_client(&["a"], &[Password]).await;
        app.create_user("mem@example.com", PASSWORD, &["a"]).await;
        let pool = &app.tokens.passwords;
        let at_start = pool.usage();
        assert_eq!(at_start.buffers_allocated, THREADS as u64, "{at_start:?}");
        assert_eq!(
            at_start.kib_allocated,
            THREADS as u64 * M_COST_KIB,
            "{at_start:?}"
        );

        let mut logins = tokio::task::JoinSet::new();
        for i in 0..LOGINS {
            let request = app.http.post(app.url("/oauth/token"));
            let (id, secret) = client.clone();
            logins.spawn(async move {
                let (username, password, expected) = match i % 3 {
                    0 => ("mem@example.com", PASSWORD, StatusCode::OK),
                    1 => (
                        "mem@example.com",
                        "wrong password!",
                        StatusCode::BAD_REQUEST,
                    ),
                    _ => ("nobody@example.com", PASSWORD, StatusCode::BAD_REQUEST),
                };
                let form = [
                    ("grant_type", "password"),
                    ("username", username),
                    ("password", password),
                ];
                let response = request
                    .basic_auth(id, Some(secret))
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), expected, "login {i}");
            });
        }
        for _ in 0..3 {
            pool.hash(secrecy::SecretString::from("a new passphrase".to_owned()))
                .await
                .unwrap();
        }
        while let Some(login) = logins.join_next().await {
            login.unwrap();
        }

        let after = pool.usage();
        assert_eq!(
            after.runs - at_start.runs,
            LOGINS as u64 + 3,
            "every login and hash ran argon2: {after:?}"
        );
        assert_eq!(
            (after.buffers_allocated, after.kib_allocated),
            (at_start.buffers_allocated, at_start.kib_allocated),
            "no argon2 memory allocated after the start"
        );
    }

    /// README (Users): a stored hash with a larger memory cost (which neither the server nor the
    /// CLI creates) is verified in memory allocated for that verification.
    async fn a_stored_hash_with_a_larger_memory_cost_gets_memory_for_its_verification(
        app: &TestApp,
    ) {
        let client = app.create_client(&["a"], &[Password]).await;
        let user = app.create_user("big@example.com", PASSWORD, &["a"]).await;
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let params = Params::new(32_768, 2, 1, None).unwrap();
        let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(PASSWORD.as_bytes(), &salt)
            .unwrap()
            .to_string();
        app.store
            .set_user_password_hash(&user, &hash)
            .await
            .unwrap();
        let pool = &app.tokens.passwords;
        let before = pool.usage();
        for _ in 0..2 {
            let response = login(
                app,
                (&client.0, &client.1),
                "big@example.com",
                PASSWORD,
                None,
            )
            .await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        let after = pool.usage();
        assert_eq!(
            (
                after.buffers_allocated - before.buffers_allocated,
                after.kib_allocated - before.kib_allocated
            ),
            (2, 2 * 32_768),
            "one 32 MiB buffer per verification: {after:?}"
        );
    }

    crate::on_both_backends!(
        tweak = |config| {
            config.password_hash_threads = super::THREADS;
            config.password_hash_queue = 64;
            config.throttle.account_threshold = 1_000;
            config.throttle.address_threshold = 1_000;
        },
        hashing_memory_is_one_19_mib_buffer_per_thread_whatever_the_login_rate,
        a_stored_hash_with_a_larger_memory_cost_gets_memory_for_its_verification,
    );
}
