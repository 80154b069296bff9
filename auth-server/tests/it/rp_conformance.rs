//! A stock relying-party library against the real server: Python authlib (Debian's
//! python3-authlib) runs discovery → PKCE authorization (through the login and consent pages
//! over HTTP) → code exchange → id_token validation → userinfo → refresh → single sign-on →
//! RP-initiated logout → prompt=none, for a confidential and a public client, on SQLite and
//! PostgreSQL (`auth-server/tests/rp/rp_flow.py`).

use test_support::rp::{RpFlow, run_rp_flow};

use crate::helpers::{TestApp, TestDb};
use crate::signin::{EMAIL, PASSWORD, REDIRECT, sign_in_client, user};

const LOGOUT_REDIRECT: &str = "https://app.example/signed-out";

/// The server with the issuer `http://localhost:PORT` (authlib validates discovery only for
/// https or `http://localhost:PORT`); it still listens on 127.0.0.1.
async fn localhost_server(db: TestDb) -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    TestApp::spawn_with(db, move |config| {
        config.bind = format!("127.0.0.1:{port}").parse().unwrap();
        config.issuer = Some(format!("http://localhost:{port}"));
    })
    .await
}

async fn relying_party_completes_the_flow(db: TestDb) {
    let app = localhost_server(db).await;
    user(&app).await;
    let confidential = sign_in_client(&app, |_| {}).await;
    let public = sign_in_client(&app, |new| {
        new.public = true;
        new.first_party = true;
    })
    .await;
    for client in [&confidential, &public] {
        let Some(outcome) = run_rp_flow(&RpFlow {
            issuer: &app.issuer,
            client_id: &client.id,
            client_secret: client.secret.as_deref(),
            redirect_uri: REDIRECT,
            post_logout_redirect_uri: LOGOUT_REDIRECT,
            email: EMAIL,
            password: PASSWORD,
        })
        .await
        else {
            return;
        };
        outcome.assert_success();
        for step in [
            "discovery",
            "token",
            "id_token",
            "userinfo",
            "refresh",
            "logout",
        ] {
            assert!(
                outcome
                    .step_names()
                    .iter()
                    .any(|name| name.starts_with(step)),
                "step {step} in {:?}",
                outcome.step_names()
            );
        }
    }
}

#[tokio::test]
async fn sqlite_relying_party_completes_the_flow() {
    relying_party_completes_the_flow(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_relying_party_completes_the_flow() {
    if let Some(db) = TestDb::postgres().await {
        relying_party_completes_the_flow(db).await;
    }
}
