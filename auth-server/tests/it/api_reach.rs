//! Revocation reaches transcription-api through Redis, end to end: the real auth server and the
//! real transcription-api (built from the same `serve` flags its binary parses) share
//! `REDIS_URL` and a random `QUEUE_PREFIX`. A token that works on `GET /transcriptions` gets
//! 401 from the API after `/oauth/revoke`, after `auth-server tokens revoke --jti` (the
//! binary) and after `auth-server clients disable` (the binary), while other tokens keep
//! working; each revocation is in the Redis set the README names, `{QUEUE_PREFIX}:revoked_jti`.
//! Skipped without Redis unless CI is on.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use auth_server::model::GrantType::ClientCredentials;
use clap::Parser;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, TestDb};

const READ: &str = "transcriptions:read";
/// Far longer than the README's 5 s, so a loaded machine cannot fail the test; the time it
/// took is printed.
const PATIENCE: Duration = Duration::from_secs(30);

/// The auth server and transcription-api on one Redis prefix.
struct Platform {
    app: TestApp,
    api: String,
    redis: redis::aio::MultiplexedConnection,
    redis_url: String,
    prefix: String,
    http: reqwest::Client,
    _api_shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Platform {
    async fn start() -> Option<Platform> {
        let redis_url = test_support::redis::reachable_url().await?;
        let prefix = format!("api-reach-{}", uuid::Uuid::new_v4().simple());
        let db = TestDb::sqlite();
        let api_db = format!("sqlite:{}", db.dir.join("api.db").display());
        let app = TestApp::spawn_with(db, |config| {
            config.redis = Some((redis_url.clone(), prefix.clone()));
        })
        .await;
        let cli = transcription_api::config::Cli::try_parse_from([
            "transcription-api",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            &api_db,
            "--issuer",
            &app.issuer,
            "--redis-url",
            &redis_url,
            "--queue-prefix",
            &prefix,
            "--job-signing-key",
            "api-reach tests: a job signing key of 32+ bytes",
        ])
        .unwrap();
        let transcription_api::config::Command::Serve(args) = cli.command else {
            unreachable!("parsed `serve`")
        };
        // `services()` installs the API's process-wide metrics recorder unless one exists:
        // install the auth server's first, so this binary's metrics tests find theirs.
        let _ = auth_server::telemetry::install_prometheus();
        let api = transcription_api::Application::build(
            args.config(&cli.common).unwrap(),
            args.services().await.unwrap(),
        )
        .await
        .unwrap();
        let base = format!("http://{}", api.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(api.run_until(async move {
            let _ = rx.await;
        }));
        let redis = redis::Client::open(redis_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        Some(Platform {
            app,
            api: base,
            redis,
            redis_url,
            prefix,
            http: reqwest::Client::new(),
            _api_shutdown: tx,
        })
    }

    async fn token(&self, client: &(String, String)) -> String {
        let body: Value = self
            .app
            .token(
                &[("grant_type", "client_credentials")],
                Some((&client.0, &client.1)),
            )
            .await
            .json()
            .await
            .unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn list(&self, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/transcriptions", self.api))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn assert_accepted(&self, token: &str, what: &str) {
        let response = self.list(token).await;
        assert_eq!(response.status(), StatusCode::OK, "{what}");
    }

    /// Polls the API until it refuses `token` as RFC 6750 says; panics after [`PATIENCE`].
    async fn until_refused(&self, token: &str, what: &str) {
        let start = Instant::now();
        loop {
            let response = self.list(token).await;
            if response.status() == StatusCode::UNAUTHORIZED {
                let challenge = response.headers()["www-authenticate"].to_str().unwrap();
                assert!(
                    challenge.starts_with(r#"Bearer realm="transcription-api""#)
                        && challenge.contains(r#"error="invalid_token""#),
                    "{what}: {challenge}"
                );
                eprintln!(
                    "{what}: the API refused the token after {:?}",
                    start.elapsed()
                );
                return;
            }
            assert_eq!(response.status(), StatusCode::OK, "{what}");
            assert!(
                start.elapsed() < PATIENCE,
                "{what}: the API still accepts the token after {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The members of `{prefix}:revoked_jti` with their scores.
    async fn revoked(&mut self) -> Vec<(String, i64)> {
        redis::cmd("ZRANGE")
            .arg(format!("{}:revoked_jti", self.prefix))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut self.redis)
            .await
            .unwrap()
    }

    /// Runs the `auth-server` binary against this platform's database and Redis prefix.
    fn admin(&self, args: &[&str]) -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_auth-server"))
            .args(args)
            .arg("--json")
            .env("DATABASE_URL", &self.app.db.url)
            .env("KEYS_DIR", self.app.db.keys_dir())
            .env("REDIS_URL", &self.redis_url)
            .env("QUEUE_PREFIX", &self.prefix)
            .env_remove("CLIENT_SECRET_PEPPER")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        let (url, prefix) = (self.redis_url.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(test_support::redis::delete_prefix(&url, &prefix));
        })
        .join();
    }
}

/// The claims of a JWT, unverified (the test only reads its own tokens' `jti` and `exp`).
fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_token_revoked_at_the_oauth_revoke_endpoint_gets_401_from_the_api() {
    let Some(mut platform) = Platform::start().await else {
        return;
    };
    let client = platform
        .app
        .create_client(&[READ], &[ClientCredentials])
        .await;
    let revoked = platform.token(&client).await;
    let kept = platform.token(&client).await;
    platform
        .assert_accepted(&revoked, "before revocation")
        .await;
    platform.assert_accepted(&kept, "before revocation").await;

    let response = platform
        .app
        .post_form(
            "/oauth/revoke",
            &[("token", &revoked)],
            (&client.0, &client.1),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    platform.until_refused(&revoked, "/oauth/revoke").await;
    platform
        .assert_accepted(&kept, "another token of the client")
        .await;

    let claims = claims(&revoked);
    let jti = claims["jti"].as_str().unwrap().to_owned();
    assert!(
        platform
            .revoked()
            .await
            .contains(&(jti, claims["exp"].as_i64().unwrap())),
        "member jti, score exp"
    );
}

#[tokio::test]
async fn a_jti_revoked_with_the_cli_gets_401_from_the_api() {
    let Some(mut platform) = Platform::start().await else {
        return;
    };
    let client = platform
        .app
        .create_client(&[READ], &[ClientCredentials])
        .await;
    let revoked = platform.token(&client).await;
    let kept = platform.token(&client).await;
    platform
        .assert_accepted(&revoked, "before revocation")
        .await;

    let jti = claims(&revoked)["jti"].as_str().unwrap().to_owned();
    let printed = platform.admin(&["tokens", "revoke", "--jti", &jti]);
    assert_eq!(printed["revoked_jti"], jti.as_str());
    platform
        .until_refused(&revoked, "tokens revoke --jti")
        .await;
    platform
        .assert_accepted(&kept, "another token of the client")
        .await;
    assert!(
        platform
            .revoked()
            .await
            .iter()
            .any(|(member, _)| *member == jti),
        "the jti is in {}:revoked_jti",
        platform.prefix
    );
}

#[tokio::test]
async fn the_tokens_of_a_client_disabled_with_the_cli_get_401_from_the_api() {
    let Some(mut platform) = Platform::start().await else {
        return;
    };
    let client = platform
        .app
        .create_client(&[READ], &[ClientCredentials])
        .await;
    let other = platform
        .app
        .create_client(&[READ], &[ClientCredentials])
        .await;
    let token = platform.token(&client).await;
    let others_token = platform.token(&other).await;
    platform.assert_accepted(&token, "before disabling").await;

    platform.admin(&["clients", "disable", &client.0]);
    platform.until_refused(&token, "clients disable").await;
    platform
        .assert_accepted(&others_token, "another client's token")
        .await;
    let cutoff = platform.revoked().await.into_iter().find(|(member, _)| {
        member.starts_with("client:") && member.ends_with(&format!(":{}", client.0))
    });
    assert!(
        cutoff.is_some(),
        "a `client:<ms>:<client_id>` cutoff in {}:revoked_jti",
        platform.prefix
    );
}
