//! The `stack` binary as a newcomer runs it and stops it (README: "Ctrl-C stops cleanly
//! (in-flight requests drain …)"): on SIGTERM and on SIGINT it stops accepting connections,
//! answers the submission it is in the middle of, and exits 0; a submission that arrives while
//! a job finishes is queued and done at the next start; and the `data/demo-credentials.json`
//! it creates is mode 0600, even under `umask 000`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use test_support::process::{HeldRequest, ServiceProcess, Signal, wait_until_refused};
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

/// An audio host the test controls: it reads the first download's request, reports it, and
/// sends the audio (the stack's own sample) only once the test releases it, so a job is in
/// flight for exactly as long as the test needs, whatever the machine's speed. Later
/// downloads are answered at once.
struct HeldAudio {
    url: String,
    requested: std::sync::mpsc::Receiver<()>,
    release: std::sync::mpsc::Sender<()>,
}

impl HeldAudio {
    fn start() -> HeldAudio {
        use std::io::{Read, Write};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/held.wav", listener.local_addr().unwrap());
        let (requested_tx, requested) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let wav = stack::sample::sample_wav();
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 1024];
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                if n == 0 {
                    let _ = requested_tx.send(());
                    // Held until the test says so (or is gone).
                    let _ = released.recv();
                }
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        wav.len()
                    )
                    .as_bytes(),
                );
                let _ = stream.write_all(&wav);
            }
        });
        HeldAudio {
            url,
            requested,
            release,
        }
    }
}

/// `POST /transcriptions` of `audio_url`; asserts 202 and returns the id.
async fn submit(api: SocketAddr, token: &str, audio_url: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("http://{api}/transcriptions"))
        .bearer_auth(token)
        .json(&serde_json::json!({"email": "drain@example.com", "audio_url": audio_url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn read(api: SocketAddr, token: &str, id: &str) -> Value {
    let response = reqwest::Client::new()
        .get(format!("http://{api}/transcriptions/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// One row of a SQLite file the stopped stack left, or `None`.
async fn sqlite_row(file: &Path, query: &str, id: &str) -> Option<String> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", file.display()))
        .await
        .unwrap();
    let row = sqlx::query_scalar(query)
        .bind(id)
        .fetch_optional(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    row
}

/// README, "Ctrl-C": the workers finish the job in flight (for up to 10 s) while both servers
/// still answer; a submission that arrives then is accepted and queued, and the e-mail of the
/// job that finished then goes out, at the next start. The job is held in flight by the
/// test's audio host until the submission has been answered, so the submission arrives during
/// the drain by construction; both workers announce the stack's 10 s grace when they stop.
#[tokio::test]
async fn a_submission_during_the_ctrl_c_drain_is_queued_and_done_at_the_next_start() {
    let dirs = Dirs::new();
    let audio = HeldAudio::start();
    let mut args = flags(&dirs);
    args.extend(["--allow-private-urls", "--log-format", "json"].map(str::to_owned));
    let credentials = dirs.data().join("demo-credentials.json");
    let (mut stack, auth, api) = start(env!("CARGO_BIN_EXE_stack"), &args, &dirs).await;
    let token = client_token(auth, &credentials).await;
    stack.wait_healthy(api).await;

    // A job in flight: the transcriber is downloading its audio, which the test holds.
    let in_flight = submit(api, &token, &audio.url).await;
    stack
        .wait_for("the held download", |_| audio.requested.try_recv().ok())
        .await;
    stack.signal(Signal::Int);
    // Both workers stop taking jobs and give theirs the stack's grace.
    let stopping = stack
        .wait_for("both workers stopping", |p| {
            let events: Vec<Value> = p
                .stderr()
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(|event| event["fields"]["message"] == "stopping: no new jobs")
                .map(|event| event["fields"].clone())
                .collect();
            (events.len() == 2).then_some(events)
        })
        .await;
    let mut roles: Vec<&str> = stopping
        .iter()
        .map(|fields| {
            assert_eq!(fields["grace"], "10s", "{fields}");
            let worker = fields["worker_id"].as_str().unwrap();
            worker.split('-').next().unwrap()
        })
        .collect();
    roles.sort_unstable();
    assert_eq!(roles, ["notifier", "transcriber"]);

    // During the drain: accepted, and queued. (Its audio is on the test's host: the sample
    // URL names this run's API port, and the next start binds another random port.)
    let during_drain = submit(api, &token, &audio.url).await;
    assert_eq!(read(api, &token, &during_drain).await["status"], "queued");
    assert!(
        stack.exit_status().is_none(),
        "exited while a job was held\n{}",
        stack.output()
    );
    audio.release.send(()).unwrap();
    let status = stack.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{status}\n{}", stack.output());

    // What the stopped stack left: the held job completed, its e-mail not sent yet; the
    // submission of the drain queued (handed to the queue, or, had the queue been slow, in
    // the outbox the relay hands over at the next start).
    let api_db = dirs.data().join("transcription-api.db");
    let queue_db = dirs.data().join("queue.db");
    let status = "SELECT status FROM transcriptions WHERE id = ?";
    assert_eq!(
        sqlite_row(&api_db, status, &in_flight).await.as_deref(),
        Some("completed"),
        "{}",
        stack.output()
    );
    assert_eq!(
        sqlite_row(&api_db, status, &during_drain).await.as_deref(),
        Some("queued")
    );
    let in_queue = sqlite_row(
        &queue_db,
        "SELECT state FROM queue_jobs WHERE queue = 'transcribe' AND id = ?",
        &during_drain,
    )
    .await;
    let in_outbox = sqlite_row(
        &api_db,
        "SELECT transcription_id FROM transcription_outbox WHERE transcription_id = ?",
        &during_drain,
    )
    .await;
    assert!(
        in_queue.as_deref() == Some("ready") || in_outbox.is_some(),
        "neither ready in the queue ({in_queue:?}) nor in the outbox"
    );
    eprintln!("the drain's submission: queue {in_queue:?}, outbox {in_outbox:?}");
    let outbox = dirs.data().join("outbox");
    let mail = |id: &str| outbox.join(format!("{id}.eml"));
    assert!(
        !mail(&in_flight).exists(),
        "the e-mail waits for the next start"
    );

    // The next start: the drain's submission is transcribed, both e-mails go out.
    let (mut stack, auth, api) = start(env!("CARGO_BIN_EXE_stack"), &args, &dirs).await;
    let token = client_token(auth, &credentials).await;
    for id in [&in_flight, &during_drain] {
        stack
            .wait_for("the transcription completed and its e-mail sent", |_| {
                mail(id).exists().then_some(())
            })
            .await;
        let record = read(api, &token, id).await;
        assert_eq!(record["status"], "completed", "{record}");
    }
    stack.stop_cleanly(Signal::Term).await;
}
