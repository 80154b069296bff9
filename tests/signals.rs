//! The `stack` binary as a newcomer runs it and stops it (README: "Ctrl-C stops cleanly
//! (in-flight requests drain …)"): on SIGTERM and on SIGINT it stops accepting connections,
//! answers the submission it is in the middle of, and exits 0; and the
//! `data/demo-credentials.json` it creates is mode 0600, even under `umask 000`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use auth_server::testing::process::{HeldRequest, ServiceProcess, Signal, wait_until_refused};
use serde_json::Value;
use uuid::Uuid;

/// Temporary data and keys directories, removed at the end.
struct Dirs(PathBuf);

impl Dirs {
    fn new() -> Dirs {
        Dirs(std::env::temp_dir().join(format!("stack-signals-{}", Uuid::new_v4().simple())))
    }

    fn data(&self) -> PathBuf {
        self.0.join("data")
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The stack's flags for random ports and `dirs`.
fn flags(dirs: &Dirs) -> Vec<String> {
    [
        "--auth-bind",
        "127.0.0.1:0",
        "--api-bind",
        "127.0.0.1:0",
        "--transcribe-delay-ms",
        "50",
        "--data-dir",
        &dirs.data().display().to_string(),
        "--keys-dir",
        &dirs.0.join("keys").display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The address the welcome text gives for `service` (`  auth server        http://…`).
fn welcome_addr(stdout: &str, service: &str) -> Option<SocketAddr> {
    stdout
        .lines()
        .find(|line| line.trim_start().starts_with(service))?
        .split_whitespace()
        .last()?
        .strip_prefix("http://")?
        .parse()
        .ok()
}

/// Starts the stack (`program` runs it: the binary, or `sh` running it) and waits for its
/// welcome text: the process and its auth server and API addresses.
async fn start(
    program: &str,
    args: &[String],
    dirs: &Dirs,
) -> (ServiceProcess, SocketAddr, SocketAddr) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut stack = ServiceProcess::spawn(program, &args, &[], &dirs.0.join("logs"));
    let (auth, api) = stack
        .wait_for("the welcome text", |p| {
            let out = p.stdout();
            Some((
                welcome_addr(&out, "auth server")?,
                welcome_addr(&out, "transcription-api")?,
            ))
        })
        .await;
    (stack, auth, api)
}

async fn client_token(auth: SocketAddr, credentials: &Path) -> String {
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(credentials).unwrap()).unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{auth}/oauth/token"))
        .basic_auth(
            credentials["client_id"].as_str().unwrap(),
            credentials["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn drains_and_exits_0_on(signal: Signal) {
    let dirs = Dirs::new();
    let (mut stack, auth, api) = start(env!("CARGO_BIN_EXE_stack"), &flags(&dirs), &dirs).await;
    let token = client_token(auth, &dirs.data().join("demo-credentials.json")).await;
    stack.wait_healthy(api).await;

    // A submission whose body the API is waiting for when the signal arrives.
    let body =
        format!(r#"{{"email":"drain@example.com","audio_url":"http://{api}/samples/hello.wav"}}"#);
    let in_flight = HeldRequest::start(
        api,
        "POST",
        "/transcriptions",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await;
    stack.signal(signal);
    stack.wait_for_log("shutdown signal received").await;
    wait_until_refused(api).await;
    assert!(
        stack.exit_status().is_none(),
        "exited with a request in flight\n{}",
        stack.output()
    );

    let answer = in_flight.finish().await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let status = stack.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{status}\n{}", stack.output());
}

#[tokio::test]
async fn the_stack_answers_the_submission_in_flight_and_exits_0_on_sigterm() {
    drains_and_exits_0_on(Signal::Term).await;
}

#[tokio::test]
async fn the_stack_answers_the_submission_in_flight_and_exits_0_on_sigint() {
    drains_and_exits_0_on(Signal::Int).await;
}

/// Run with `umask 000`, under which a file created without an explicit mode would be 0666:
/// the credentials file is 0600 because the binary asks for it.
#[tokio::test]
async fn the_demo_credentials_file_is_created_0600_even_under_umask_0() {
    let dirs = Dirs::new();
    let credentials = dirs.data().join("demo-credentials.json");
    assert!(!credentials.exists());
    let mut args = vec![
        "-c".to_owned(),
        r#"umask 000 && exec "$0" "$@""#.to_owned(),
        env!("CARGO_BIN_EXE_stack").to_owned(),
    ];
    args.extend(flags(&dirs));
    let (mut stack, _, _) = start("sh", &args, &dirs).await;
    assert!(
        stack
            .stdout()
            .contains("First start: created a demo client and user"),
        "{}",
        stack.output()
    );
    let mode = std::fs::metadata(&credentials)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "demo-credentials.json is {mode:o}");
    // The umask really was 000: the data directory the stack created is 0777.
    let data_mode = std::fs::metadata(dirs.data()).unwrap().permissions().mode() & 0o777;
    assert_eq!(data_mode, 0o777, "the data directory is {data_mode:o}");
    stack.stop_cleanly(Signal::Term).await;
}
