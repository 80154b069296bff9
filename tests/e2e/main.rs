//! End-to-end: the whole platform in one process, driven over HTTP as its users would — a
//! client token, a submission, the worker transcribing and reporting, the e-mail, the result.
//! Once on SQLite with the embedded queue, once on PostgreSQL + Redis (required in CI), and the
//! password-grant path with owner isolation between users. `walkthrough` runs the curl lines
//! the binary prints with a real `curl`, opens its sign-in URL and scrapes its `/metrics`;
//! `sign_in` drives the demo web app through the auth server's pages; `profiles` checks the
//! release and profiling build settings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod backends;
mod cli;
mod profiles;
mod reset;
mod revocation;
mod shutdown;
mod sign_in;
mod walkthrough;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Value, json};
use stack::{SAMPLE_PATH, Stack, StackConfig};
use test_support::db::TestDb;
use test_support::redis::reachable_url;
use test_support::smtp::SmtpSink;
use uuid::Uuid;

/// Temporary data and keys directories, removed at the end.
struct Dirs(PathBuf);

impl Dirs {
    fn new() -> Dirs {
        Dirs(std::env::temp_dir().join(format!("stack-e2e-{}", Uuid::new_v4().simple())))
    }

    fn config(&self) -> StackConfig {
        StackConfig {
            auth_bind: "127.0.0.1:0".parse().unwrap(),
            api_bind: "127.0.0.1:0".parse().unwrap(),
            transcribe_delay: Duration::from_millis(50),
            ..StackConfig::new(self.0.join("data"), self.0.join("keys"))
        }
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Client {
    http: reqwest::Client,
    auth: String,
    api: String,
}

impl Client {
    fn new(stack: &Stack) -> Client {
        Client {
            http: reqwest::Client::new(),
            auth: stack.auth_url.clone(),
            api: stack.api_url.clone(),
        }
    }

    async fn token(&self, client: (&str, &str), form: &[(&str, &str)]) -> Value {
        let response = self
            .http
            .post(format!("{}/oauth/token", self.auth))
            .basic_auth(client.0, Some(client.1))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn submit(&self, token: &str, email: &str) -> String {
        let sample = format!("{}{SAMPLE_PATH}", self.api);
        self.submit_url(token, email, &sample).await
    }

    async fn submit_url(&self, token: &str, email: &str, audio_url: &str) -> String {
        let response = self
            .http
            .post(format!("{}/transcriptions", self.api))
            .bearer_auth(token)
            .json(&json!({"email": email, "audio_url": audio_url}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn read(&self, token: &str, id: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/transcriptions/{id}", self.api))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Reads the transcription until it is final (the worker is asynchronous); panics after
    /// 60 s, which only a broken pipeline takes.
    async fn until_final(&self, token: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let record: Value = self.read(token, id).await.json().await.unwrap();
            if record["status"] == "completed" || record["status"] == "failed" {
                return record;
            }
            assert!(Instant::now() < deadline, "still {record} after 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until `check` gives a value (the notifier runs after the result is reported).
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn outbox_mails(stack: &Stack) -> Vec<String> {
    std::fs::read_dir(&stack.outbox_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// Undoes quoted-printable soft line breaks and `=3D` so the body can be searched.
fn unfold(mail: &str) -> String {
    mail.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

#[tokio::test]
async fn a_client_transcription_completes_on_sqlite_with_the_embedded_queue() {
    let dirs = Dirs::new();
    let stack = Stack::start(dirs.config()).await.unwrap();
    let client = Client::new(&stack);
    let c = &stack.credentials;
    let token = client
        .token(
            (&c.client_id, &c.client_secret),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let token = token["access_token"].as_str().unwrap();

    let id = client.submit(token, "listener@example.com").await;
    let record = client.until_final(token, &id).await;
    assert_eq!(record["status"], "completed", "{record}");
    let transcript = record["transcript"].as_str().unwrap().to_owned();
    assert!(!transcript.is_empty());

    let mail = eventually("the e-mail", || outbox_mails(&stack).pop()).await;
    let mail = unfold(&mail);
    assert!(mail.contains("To: listener@example.com"), "{mail}");
    assert!(
        mail.contains("Subject: Your transcription is ready"),
        "{mail}"
    );
    assert!(mail.contains(&id) && mail.contains(&transcript), "{mail}");
    assert_eq!(outbox_mails(&stack).len(), 1);
    // The notifier reports the delivery to the API: the owner sees it on the record.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let record: Value = client.read(token, &id).await.json().await.unwrap();
        if record["notification"]["status"] == "sent" {
            break;
        }
        assert_eq!(record["notification"]["status"], "pending", "{record}");
        assert!(Instant::now() < deadline, "notification still {record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_stack_fetches_its_own_sample_and_no_other_private_address() {
    let dirs = Dirs::new();
    fetches_its_own_sample_and_no_other_private_address(dirs.config()).await;
}

/// README, walkthrough: the refusal of other private addresses holds "on SQLite as on the
/// production backends".
#[tokio::test]
async fn the_stack_on_postgres_and_redis_fetches_its_own_sample_and_no_other_private_address() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let Some(redis) = reachable_url().await else {
        return;
    };
    let dirs = Dirs::new();
    let prefix = format!("e2e-{}", Uuid::new_v4().simple());
    let config = StackConfig {
        database_url: Some(db.url.clone()),
        redis_url: Some(SecretString::from(redis.clone())),
        queue_prefix: prefix.clone(),
        ..dirs.config()
    };
    fetches_its_own_sample_and_no_other_private_address(config).await;
    // It ran on PostgreSQL and Redis, not on a silent fallback to SQLite files.
    backends::assert_no_sqlite_files(&dirs.0);
    test_support::redis::delete_prefix(&redis, &prefix).await;
}

/// The auth server's JWKS and a closed loopback port are refused with the owner-facing text
/// and nothing about the host; the stack's own sample is fetched.
async fn fetches_its_own_sample_and_no_other_private_address(config: StackConfig) {
    let stack = Stack::start(config).await.unwrap();
    let client = Client::new(&stack);
    let c = &stack.credentials;
    let token = client
        .token(
            (&c.client_id, &c.client_secret),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let token = token["access_token"].as_str().unwrap();

    // The auth server's JWKS, on the same loopback host but another port: refused, and the
    // owner learns nothing about the host (no address, port or connection error).
    let jwks = format!("{}/.well-known/jwks.json", stack.auth_url);
    let refused = client.submit_url(token, "owner@example.com", &jwks).await;
    let record = client.until_final(token, &refused).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(
        record["error"], "the audio could not be downloaded (refused_address)",
        "{record}"
    );
    // A closed port on the loopback host gets exactly the same answer as an open one.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let scan = client
        .submit_url(
            token,
            "owner@example.com",
            &format!("http://127.0.0.1:{closed}/x"),
        )
        .await;
    let scanned = client.until_final(token, &scan).await;
    assert_eq!(scanned["error"], record["error"], "{scanned}");

    // Its own sample origin is allowed.
    let sample = client.submit(token, "owner@example.com").await;
    let record = client.until_final(token, &sample).await;
    assert_eq!(record["status"], "completed", "{record}");
    stack.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_transcription_completes_on_postgres_and_redis_with_smtp() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let Some(redis) = reachable_url().await else {
        return;
    };
    let sink = SmtpSink::start().await;
    let dirs = Dirs::new();
    let prefix = format!("e2e-{}", Uuid::new_v4().simple());
    let config = StackConfig {
        database_url: Some(db.url.clone()),
        redis_url: Some(SecretString::from(redis.clone())),
        queue_prefix: prefix.clone(),
        smtp_url: Some(SecretString::from(sink.url())),
        ..dirs.config()
    };
    let stack = Stack::start(config).await.unwrap();
    let client = Client::new(&stack);
    let c = &stack.credentials;
    let token = client
        .token(
            (&c.client_id, &c.client_secret),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let token = token["access_token"].as_str().unwrap();

    let id = client.submit(token, "listener@example.com").await;
    let record = client.until_final(token, &id).await;
    assert_eq!(record["status"], "completed", "{record}");
    let transcript = record["transcript"].as_str().unwrap().to_owned();
    backends::assert_heartbeats_under_prefix(&redis, &prefix).await;

    let mail = eventually("the e-mail", || sink.received().pop()).await;
    assert_eq!(mail.recipients, ["listener@example.com"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Your transcription is ready")
    );
    let body = mail.body();
    assert!(body.contains(&id) && body.contains(&transcript), "{body}");
    assert_eq!(sink.received().len(), 1);
    assert!(
        outbox_mails(&stack).is_empty(),
        "SMTP mode writes no .eml files"
    );
    let client_id = c.client_id.clone();
    stack.shutdown().await.unwrap();

    backends::assert_rows_in_postgres(&db.url, &id, &transcript, &client_id).await;
    backends::assert_queue_keys_under_prefix(&redis, &prefix, &id).await;
    backends::assert_no_sqlite_files(&dirs.0);
    test_support::redis::delete_prefix(&redis, &prefix).await;
}

#[tokio::test]
async fn a_user_logs_in_refreshes_submits_and_only_they_can_read_it() {
    let dirs = Dirs::new();
    let config = dirs.config();
    let stack = Stack::start(config.clone()).await.unwrap();
    let client = Client::new(&stack);
    let c = &stack.credentials;
    let app = (c.client_id.as_str(), c.client_secret.as_str());

    let login = client
        .token(
            app,
            &[
                ("grant_type", "password"),
                ("username", &c.user_email),
                ("password", &c.user_password),
            ],
        )
        .await;
    assert_eq!(login["scope"], "transcriptions:read transcriptions:write");
    let refreshed = client
        .token(
            app,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", login["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    let token = refreshed["access_token"].as_str().unwrap();
    assert_ne!(token, login["access_token"].as_str().unwrap());

    let id = client.submit(token, &c.user_email).await;
    let record = client.until_final(token, &id).await;
    assert_eq!(record["status"], "completed");

    // A second user of the same app, and the app itself, cannot see it.
    let admin = auth_server::admin::Admin::open(&auth_server::admin::AdminOptions::new(&format!(
        "sqlite:{}",
        config.data_dir.join("auth-server.db").display()
    )))
    .await
    .unwrap();
    let other = auth_server::admin::NewUser::new(
        "other@example.com",
        ["transcriptions:read", "transcriptions:write"],
    )
    .unwrap();
    admin
        .register_user(other, SecretString::from("another long passphrase"))
        .await
        .unwrap();
    let other_login = client
        .token(
            app,
            &[
                ("grant_type", "password"),
                ("username", "other@example.com"),
                ("password", "another long passphrase"),
            ],
        )
        .await;
    let other_token = other_login["access_token"].as_str().unwrap();
    assert_eq!(client.read(other_token, &id).await.status(), 404);
    let app_token = client
        .token(app, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(
        client
            .read(app_token["access_token"].as_str().unwrap(), &id)
            .await
            .status(),
        404
    );
    assert_eq!(client.read(token, &id).await.status(), 200);

    // The user's mail went to the user.
    let mail = eventually("the e-mail", || outbox_mails(&stack).pop()).await;
    assert!(unfold(&mail).contains(&format!("To: {}", c.user_email)));
    stack.shutdown().await.unwrap();
}

/// Without Redis the API's revocation list is a copy of the auth server's store, refreshed
/// every second: revoking a refresh token, and ending every token of a user, reach the API's
/// already issued (and cached) access tokens within 5 s; a login afterwards works.
#[tokio::test]
async fn revocations_reach_the_apis_issued_tokens_on_sqlite() {
    let dirs = Dirs::new();
    let config = dirs.config();
    let stack = Stack::start(config.clone()).await.unwrap();
    let client = Client::new(&stack);
    let c = &stack.credentials;
    let app = (c.client_id.as_str(), c.client_secret.as_str());
    let login = async || {
        let form = [
            ("grant_type", "password"),
            ("username", c.user_email.as_str()),
            ("password", c.user_password.as_str()),
        ];
        let body = client.token(app, &form).await;
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["refresh_token"].as_str().unwrap().to_owned(),
        )
    };
    let unknown = Uuid::new_v4().to_string();
    // 404 = the token was accepted (no such transcription), 401 = refused.
    let status = async |token: &str| client.read(token, &unknown).await.status().as_u16();
    let until_refused = async |token: &str, what: &str| {
        let start = Instant::now();
        while status(token).await != 401 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{what}: still accepted after 5 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("{what}: refused after {:?}", start.elapsed());
    };

    // RFC 7009 §2.1: revoking the refresh token ends the access token of the same login.
    let (first, refresh) = login().await;
    let (second, _) = login().await;
    assert_eq!(status(&first).await, 404);
    let revoked = client
        .http
        .post(format!("{}/oauth/revoke", client.auth))
        .basic_auth(app.0, Some(app.1))
        .form(&[("token", refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    until_refused(&first, "refresh token revoked").await;
    assert_eq!(status(&second).await, 404, "another login is untouched");

    // Ending every token of the user (what `tokens revoke --user` runs).
    let admin = auth_server::admin::Admin::open(&auth_server::admin::AdminOptions::new(&format!(
        "sqlite:{}",
        config.data_dir.join("auth-server.db").display()
    )))
    .await
    .unwrap();
    admin.revoke_user_tokens(&c.user_email).await.unwrap();
    until_refused(&second, "all the user's tokens revoked").await;
    let (after, _) = login().await;
    assert_eq!(
        status(&after).await,
        404,
        "a login after the revocation works"
    );
    stack.shutdown().await.unwrap();
}

/// The stack generates `AUTH_SECRETS` into `data/auth-secrets` (0600) for a fresh auth
/// database, reuses it on restart, keeps no key files, and refuses to start (generating
/// nothing) when the file is gone but the database is encrypted.
#[tokio::test]
async fn the_stack_generates_its_auth_secrets_once_and_never_beside_an_encrypted_database() {
    let dirs = Dirs::new();
    let file = dirs.0.join("data").join(stack::AUTH_SECRETS_FILE);
    let stack = Stack::start(dirs.config()).await.unwrap();
    let secret = std::fs::read_to_string(&file).unwrap();
    assert_eq!(secret.trim().len(), 43, "32 random bytes, base64url");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (id, client_secret) = (
        stack.credentials.client_id.clone(),
        stack.credentials.client_secret.clone(),
    );
    let grant = [("grant_type", "client_credentials")];
    Client::new(&stack)
        .token((&id, &client_secret), &grant)
        .await;
    stack.shutdown().await.unwrap();

    let stack = Stack::start(dirs.config()).await.unwrap();
    assert!(!stack.created, "the demo client is reused");
    Client::new(&stack)
        .token((&id, &client_secret), &grant)
        .await;
    stack.shutdown().await.unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), secret);
    assert!(!dirs.0.join("keys").exists(), "no key files");

    std::fs::remove_file(&file).unwrap();
    let err = Stack::start(dirs.config()).await.err().unwrap();
    let message = format!("{err:#}");
    assert!(message.contains("auth-secrets is missing"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        !file.exists(),
        "no new secret beside the encrypted database"
    );
}
