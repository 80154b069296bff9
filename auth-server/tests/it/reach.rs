//! Revocation reaches access tokens already issued (RFC 7009 §2.1; docs/decisions.md,
//! "Revocation reach"): for every event that ends a session or an account, a token issued
//! before it is `active:false` at `/oauth/introspect` and is refused by a real
//! `token_guard::TokenGuard` fed from Redis within 5 s, while a token issued after it (where
//! the event allows new ones) stays valid. On SQLite and PostgreSQL; skipped without Redis
//! unless `CI=true`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use auth_server::grants::INTROSPECT_SCOPE;
use auth_server::model::GrantType::{ClientCredentials, Password, RefreshToken};
use reqwest::StatusCode;
use serde_json::Value;
use token_guard::{
    GuardConfig, RedisRevocationConfig, RedisRevocationList, RevocationList, TokenGuard,
    VerifyError,
};

use crate::helpers::{TestApp, TestDb};
use crate::password::{PASSWORD, login};

/// How soon every resource server must refuse a revoked token.
const REACH: Duration = Duration::from_secs(5);
const EMAIL: &str = "reach@example.com";

/// The auth server with Redis, a guard reading the same Redis set, a client with the password,
/// refresh and client_credentials grants, a user, and a privileged client for introspection.
struct Reach {
    app: TestApp,
    guard: TokenGuard,
    redis_url: String,
    prefix: String,
    client: (String, String),
    /// A client with the password grant but no refresh tokens: its logins have no family, so
    /// only the user's cutoff can end them.
    password_only: (String, String),
    user: String,
    introspector: (String, String),
}

impl Reach {
    async fn spawn(db: TestDb) -> Option<Reach> {
        let redis_url = test_support::redis::reachable_url().await?;
        let prefix = format!("reach-{}", uuid::Uuid::new_v4().simple());
        let app = TestApp::spawn_with(db, |config| {
            config.redis = Some((redis_url.clone(), prefix.clone()));
            // Reuse is reuse at once: no grace period to wait out.
            config.refresh_grace = Duration::ZERO;
        })
        .await;
        let list: Arc<dyn RevocationList> = Arc::new(
            RedisRevocationList::connect(
                RedisRevocationConfig::new(redis_url.clone()).with_prefix(prefix.clone()),
            )
            .await
            .unwrap(),
        );
        let guard = TokenGuard::new(GuardConfig::new(&app.issuer, "transcription-api"), list)
            .await
            .unwrap();
        let client = app
            .create_client(&["a"], &[Password, RefreshToken, ClientCredentials])
            .await;
        // The admin rules add refresh_token to a new password client; an older row lacks it.
        let password_only = app.create_legacy_client(&["a"], &[Password]).await;
        let user = app.create_user(EMAIL, PASSWORD, &["a"]).await;
        let introspector = app
            .create_client(&[INTROSPECT_SCOPE], &[ClientCredentials])
            .await;
        Some(Reach {
            app,
            guard,
            redis_url,
            prefix,
            client,
            password_only,
            user,
            introspector,
        })
    }

    fn client(&self) -> (&str, &str) {
        (&self.client.0, &self.client.1)
    }

    /// A password login: (access token, refresh token).
    async fn login_with(&self, password: &str) -> (String, String) {
        let response = login(&self.app, self.client(), EMAIL, password, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    async fn login(&self) -> (String, String) {
        self.login_with(PASSWORD).await
    }

    /// Exchanges a refresh token: (access token, successor).
    async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        self.app.token(&form, Some(self.client())).await
    }

    async fn rotate(&self, refresh_token: &str) -> (String, String) {
        let response = self.refresh(refresh_token).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    async fn client_token(&self) -> String {
        let response = self
            .app
            .token(&[("grant_type", "client_credentials")], Some(self.client()))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn active(&self, token: &str) -> bool {
        let response = self
            .app
            .post_form(
                "/oauth/introspect",
                &[("token", token)],
                (&self.introspector.0, &self.introspector.1),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["active"].as_bool().unwrap()
    }

    /// Valid for introspection and for the guard (which then also caches it).
    async fn assert_valid(&self, token: &str, what: &str) {
        assert!(
            self.active(token).await,
            "{what}: introspection says inactive"
        );
        if let Err(err) = self.guard.verify(token).await {
            panic!("{what}: the guard refuses it: {err}");
        }
    }

    /// Inactive at introspection at once, and refused by the guard within [`REACH`].
    async fn assert_revoked(&self, token: &str, what: &str) {
        assert!(
            !self.active(token).await,
            "{what}: introspection says active"
        );
        let start = tokio::time::Instant::now();
        loop {
            match self.guard.verify(token).await {
                Err(VerifyError::Revoked) => {
                    eprintln!("{what}: refused by the guard after {:?}", start.elapsed());
                    return;
                }
                Err(err) => panic!("{what}: refused for another reason: {err}"),
                Ok(_) if start.elapsed() >= REACH => {
                    panic!("{what}: still accepted by the guard after {REACH:?}")
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Runs the admin CLI against this server's database and Redis; returns its JSON output.
    fn cli(&self, args: &[&str], stdin: &str) -> Value {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_auth-server"))
            .args(args)
            .arg("--json")
            .env("DATABASE_URL", &self.app.db.url)
            .env("AUTH_SECRETS", self.app.db.auth_secrets())
            .env("KEYS_DIR", self.app.db.keys_dir())
            .env("REDIS_URL", &self.redis_url)
            .env("QUEUE_PREFIX", &self.prefix)
            .env_remove("CLIENT_SECRET_PEPPER")
            .env_remove("ACCESS_TOKEN_TTL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Through the main client: two access tokens of one login (the first and a rotated one)
    /// and a second login's, all accepted.
    async fn session_tokens(&self) -> Vec<String> {
        let (first, refresh_token) = self.login().await;
        let (rotated, _) = self.rotate(&refresh_token).await;
        let (other_login, _) = self.login().await;
        let tokens = vec![first, rotated, other_login];
        for token in &tokens {
            self.assert_valid(token, "before the event").await;
        }
        tokens
    }

    /// The user's session tokens and a login without a refresh family (another client).
    async fn user_tokens(&self) -> Vec<String> {
        let mut tokens = self.session_tokens().await;
        let response = login(
            &self.app,
            (&self.password_only.0, &self.password_only.1),
            EMAIL,
            PASSWORD,
            None,
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert!(body.get("refresh_token").is_none(), "no family");
        let familyless = body["access_token"].as_str().unwrap().to_owned();
        self.assert_valid(&familyless, "before the event").await;
        tokens.push(familyless);
        tokens
    }

    /// The user's session tokens through this client and the client's own token.
    async fn client_tokens(&self) -> Vec<String> {
        let mut tokens = self.session_tokens().await;
        let own = self.client_token().await;
        self.assert_valid(&own, "before the event").await;
        tokens.push(own);
        tokens
    }

    async fn assert_all_revoked(&self, tokens: &[String], event: &str) {
        for (i, token) in tokens.iter().enumerate() {
            self.assert_revoked(token, &format!("{event}, token {i}"))
                .await;
        }
    }
}

async fn revoking_a_refresh_token_ends_the_access_tokens_of_its_login(reach: &Reach) {
    let (first, refresh_token) = reach.login().await;
    let (rotated, current) = reach.rotate(&refresh_token).await;
    let (other_login, _) = reach.login().await;
    for token in [&first, &rotated, &other_login] {
        reach.assert_valid(token, "before").await;
    }
    let response = reach
        .app
        .post_form("/oauth/revoke", &[("token", &current)], reach.client())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    reach
        .assert_all_revoked(&[first, rotated], "refresh token revoked")
        .await;
    reach
        .assert_valid(&other_login, "another login of the same user")
        .await;
    let (after, _) = reach.login().await;
    reach.assert_valid(&after, "a new login").await;
}

async fn refresh_token_reuse_ends_the_access_tokens_of_its_login(reach: &Reach) {
    let (first, refresh_token) = reach.login().await;
    let (rotated, _) = reach.rotate(&refresh_token).await;
    for token in [&first, &rotated] {
        reach.assert_valid(token, "before").await;
    }
    let reused = reach.refresh(&refresh_token).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST, "reuse is refused");
    reach
        .assert_all_revoked(&[first, rotated], "refresh token reused")
        .await;
    let (after, _) = reach.login().await;
    reach.assert_valid(&after, "a new login").await;
}

async fn disabling_a_user_ends_their_access_tokens(reach: &Reach) {
    let tokens = reach.user_tokens().await;
    reach.cli(&["users", "disable", &reach.user], "");
    reach.assert_all_revoked(&tokens, "user disabled").await;
}

async fn deleting_a_user_ends_their_access_tokens(reach: &Reach) {
    let tokens = reach.user_tokens().await;
    reach.cli(&["users", "delete", &reach.user], "");
    reach.assert_all_revoked(&tokens, "user deleted").await;
}

async fn a_password_reset_ends_earlier_access_tokens_only(reach: &Reach) {
    let tokens = reach.user_tokens().await;
    let new_password = "a completely new passphrase";
    reach.cli(
        &["users", "reset-password", &reach.user],
        &format!("{new_password}\n"),
    );
    reach.assert_all_revoked(&tokens, "password reset").await;
    let (after, _) = reach.login_with(new_password).await;
    reach.assert_valid(&after, "a login after the reset").await;
}

async fn revoking_a_users_tokens_ends_earlier_access_tokens_only(reach: &Reach) {
    let tokens = reach.user_tokens().await;
    let own = reach.client_token().await;
    let out = reach.cli(&["tokens", "revoke", "--user", &reach.user], "");
    assert_eq!(out["revoked_sessions"], 2, "{out}");
    reach
        .assert_all_revoked(&tokens, "tokens revoke --user")
        .await;
    reach
        .assert_valid(&own, "the client's own token is not the user's")
        .await;
    let (after, _) = reach.login().await;
    reach
        .assert_valid(&after, "a login after the revocation")
        .await;
}

async fn disabling_a_client_ends_its_access_tokens(reach: &Reach) {
    let tokens = reach.client_tokens().await;
    reach.cli(&["clients", "disable", &reach.client.0], "");
    reach.assert_all_revoked(&tokens, "client disabled").await;
}

async fn deleting_a_client_ends_its_access_tokens(reach: &Reach) {
    let tokens = reach.client_tokens().await;
    reach.cli(&["clients", "delete", &reach.client.0], "");
    reach.assert_all_revoked(&tokens, "client deleted").await;
}

async fn revoking_a_clients_tokens_ends_earlier_access_tokens_only(reach: &Reach) {
    let tokens = reach.client_tokens().await;
    let out = reach.cli(&["tokens", "revoke", "--client", &reach.client.0], "");
    assert_eq!(out["revoked_sessions"], 2, "{out}");
    reach
        .assert_all_revoked(&tokens, "tokens revoke --client")
        .await;
    let own = reach.client_token().await;
    reach
        .assert_valid(&own, "a client token after the revocation")
        .await;
    let (after, _) = reach.login().await;
    reach
        .assert_valid(&after, "a login after the revocation")
        .await;
}

/// A revocation whose Redis write was lost (here: the set deleted behind the server's back)
/// is copied from the store again by the server's periodic republish, and guards refuse the
/// token again.
async fn a_revocation_lost_on_its_way_to_redis_is_copied_again(reach: &Reach) {
    let token = reach.client_token().await;
    let response = reach
        .app
        .post_form("/oauth/revoke", &[("token", &token)], reach.client())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    reach
        .assert_all_revoked(std::slice::from_ref(&token), "revoked")
        .await;
    let client = redis::Client::open(reach.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // The key name is the contract with every resource server: a literal, not the code's.
    let key = format!("{}:revoked_jti", reach.prefix);
    redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let deadline =
        std::time::Instant::now() + auth_server::REPUBLISH_INTERVAL + Duration::from_secs(5);
    loop {
        let members: i64 = redis::cmd("ZCARD")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if members > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the revocation was not copied to Redis again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reach.assert_all_revoked(&[token], "copied again").await;
}

macro_rules! on_both_backends_with_redis {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(reach) = super::Reach::spawn(TestDb::sqlite()).await {
                        super::$name(&reach).await;
                        test_support::redis::delete_prefix(&reach.redis_url, &reach.prefix).await;
                    }
                }
            )*
            use crate::helpers::TestDb;
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = TestDb::postgres().await else { return };
                    if let Some(reach) = super::Reach::spawn(db).await {
                        super::$name(&reach).await;
                        test_support::redis::delete_prefix(&reach.redis_url, &reach.prefix).await;
                    }
                }
            )*
            use crate::helpers::TestDb;
        }
    };
}

on_both_backends_with_redis!(
    revoking_a_refresh_token_ends_the_access_tokens_of_its_login,
    refresh_token_reuse_ends_the_access_tokens_of_its_login,
    disabling_a_user_ends_their_access_tokens,
    deleting_a_user_ends_their_access_tokens,
    a_password_reset_ends_earlier_access_tokens_only,
    revoking_a_users_tokens_ends_earlier_access_tokens_only,
    disabling_a_client_ends_its_access_tokens,
    deleting_a_client_ends_its_access_tokens,
    revoking_a_clients_tokens_ends_earlier_access_tokens_only,
    a_revocation_lost_on_its_way_to_redis_is_copied_again,
);
