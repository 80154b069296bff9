//! Without Redis the API's revocation list is the stack's copy of the auth server's store,
//! refreshed every second: an access token revoked at `/oauth/revoke`, one whose `jti` is
//! revoked with `auth-server tokens revoke --jti`, and every token of a client disabled with
//! `auth-server clients disable` get 401 from the API, while other tokens keep working.
//!
//! The admin commands run in-process through `auth_server::cli::run`, which is all the
//! binary's `main` calls (the binary itself is built for the auth-server package's tests
//! only), against the stack's own database and keys.

use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches};
use serde_json::Value;
use stack::Stack;
use uuid::Uuid;

use super::{Client, Dirs};

/// Far longer than the README's 5 s, so a loaded machine cannot fail the test; the time it
/// took is printed.
const PATIENCE: Duration = Duration::from_secs(30);

/// `GET /transcriptions/<unknown id>`: 404 when the API accepts the token, 401 when it does
/// not, 403 when it accepts it without `transcriptions:read`.
async fn status(client: &Client, token: &str) -> u16 {
    let unknown = Uuid::new_v4().to_string();
    client.read(token, &unknown).await.status().as_u16()
}

async fn until_refused(client: &Client, token: &str, what: &str) {
    let start = Instant::now();
    loop {
        match status(client, token).await {
            401 => break,
            404 => {}
            other => panic!("{what}: unexpected {other}"),
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: the API still accepts the token after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{what}: the API refused the token after {:?}",
        start.elapsed()
    );
}

/// The `jti` of `token`, from the auth server's introspection (the caller owns the token).
async fn jti(client: &Client, caller: (&str, &str), token: &str) -> String {
    let info: Value = client
        .http
        .post(format!("{}/oauth/introspect", client.auth))
        .basic_auth(caller.0, Some(caller.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["active"], true, "{info}");
    info["jti"].as_str().unwrap().to_owned()
}

/// `auth-server <args>` on the stack's database and keys, as the binary runs with `REDIS_URL`
/// unset like the stack: the test's own `REDIS_URL`, if any, is not read.
async fn admin(dirs: &Dirs, args: &[&str]) {
    let config = dirs.config();
    let database = format!(
        "sqlite:{}",
        config.data_dir.join("auth-server.db").display()
    );
    let keys = config.keys_dir.display().to_string();
    let mut argv = vec![
        "auth-server",
        "--database-url",
        &database,
        "--keys-dir",
        &keys,
    ];
    argv.extend_from_slice(args);
    let command = auth_server::cli::Cli::command().mut_arg("redis_url", |arg| arg.env(None));
    let matches = command.try_get_matches_from(argv).unwrap();
    let cli = auth_server::cli::Cli::from_arg_matches(&matches).unwrap();
    assert!(cli.common.redis_url.is_none());
    auth_server::cli::run(cli).await.unwrap();
}

#[tokio::test]
async fn access_token_revocations_reach_the_api_through_the_copy_loop() {
    let dirs = Dirs::new();
    let stack = Stack::start(dirs.config()).await.unwrap();
    let client = Client::new(&stack);
    let c = &stack.credentials;
    let app = (c.client_id.as_str(), c.client_secret.as_str());
    let worker = (c.worker_client_id.as_str(), c.worker_client_secret.as_str());
    let token = async |credentials: (&str, &str)| {
        let body = client
            .token(credentials, &[("grant_type", "client_credentials")])
            .await;
        body["access_token"].as_str().unwrap().to_owned()
    };

    // An access token revoked at the revocation endpoint (RFC 7009).
    let (revoked, kept) = (token(app).await, token(app).await);
    assert_eq!(status(&client, &revoked).await, 404);
    let response = client
        .http
        .post(format!("{}/oauth/revoke", client.auth))
        .basic_auth(app.0, Some(app.1))
        .form(&[("token", revoked.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    until_refused(&client, &revoked, "/oauth/revoke").await;
    assert_eq!(
        status(&client, &kept).await,
        404,
        "another token still works"
    );

    // One jti revoked by the operator.
    let jti = jti(&client, app, &kept).await;
    admin(&dirs, &["tokens", "revoke", "--jti", &jti]).await;
    until_refused(&client, &kept, "tokens revoke --jti").await;
    let fresh = token(app).await;
    assert_eq!(status(&client, &fresh).await, 404, "a new token works");

    // Every token of a disabled client; the worker's client is untouched (its token has no
    // `transcriptions:read`: 403, accepted but not allowed, never 401).
    let workers = token(worker).await;
    assert_eq!(status(&client, &workers).await, 403);
    admin(&dirs, &["clients", "disable", app.0]).await;
    until_refused(&client, &fresh, "clients disable").await;
    assert_eq!(
        status(&client, &workers).await,
        403,
        "another client's token"
    );

    stack.shutdown().await.unwrap();
}
