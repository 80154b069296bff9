//! Ctrl-C with a job in flight, against the real binary: the workers stop taking jobs and
//! finish the one they hold while both servers still answer its reports; then the servers
//! stop. The job is completed, never failed or retried, and the next start finds it done.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use job_queue::{QueueConfig, SigningKey};

use super::*;

/// `stack` started as a newcomer would, on random ports in a temporary data directory, with
/// JSON logs collected; killed if a test ends while it still runs.
struct StackProcess {
    child: Child,
    auth: String,
    api: String,
    log: Arc<Mutex<String>>,
    /// Ends when the process has closed its stderr (it exited).
    log_reader: Option<std::thread::JoinHandle<()>>,
}

impl StackProcess {
    fn start(dirs: &Dirs, transcribe_delay_ms: u64) -> StackProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stack"))
            .args(["--auth-bind", "127.0.0.1:0", "--api-bind", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .arg("--transcribe-delay-ms")
            .arg(transcribe_delay_ms.to_string())
            .arg("--data-dir")
            .arg(dirs.0.join("data"))
            .arg("--keys-dir")
            .arg(dirs.0.join("keys"))
            .env("RUST_LOG", "info")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("SMTP_URL")
            .env_remove("JOB_SIGNING_KEY")
            .env_remove("QUEUE_PREFIX")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let log_reader = std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        // The welcome text names the bound addresses.
        let (lines, received) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let (mut auth, mut api) = (None, None);
        while auth.is_none() || api.is_none() {
            let line = received
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no addresses; log:\n{}", log.lock().unwrap()));
            let url = || line.split_whitespace().last().map(str::to_owned);
            if line.trim_start().starts_with("auth server ") {
                auth = url();
            } else if line.trim_start().starts_with("transcription-api ") {
                api = url();
            }
        }
        StackProcess {
            child,
            auth: auth.unwrap(),
            api: api.unwrap(),
            log,
            log_reader: Some(log_reader),
        }
    }

    fn client(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            auth: self.auth.clone(),
            api: self.api.clone(),
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit status, at most 60 s.
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "still running 60 s after SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.log_reader.take() {
            reader.join().unwrap();
        }
        let log = self.log.lock().unwrap().clone();
        (status, log)
    }
}

impl Drop for StackProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn demo_client(dirs: &Dirs) -> (String, String) {
    let text = std::fs::read(dirs.0.join("data/demo-credentials.json")).unwrap();
    let demo: Value = serde_json::from_slice(&text).unwrap();
    (
        demo["client_id"].as_str().unwrap().to_owned(),
        demo["client_secret"].as_str().unwrap().to_owned(),
    )
}

async fn demo_token(client: &Client, demo: &(String, String)) -> String {
    let body = client
        .token((&demo.0, &demo.1), &[("grant_type", "client_credentials")])
        .await;
    body["access_token"].as_str().unwrap().to_owned()
}

#[cfg(unix)]
#[tokio::test]
async fn ctrl_c_lets_the_job_in_flight_finish_before_the_servers_stop() {
    let dirs = Dirs::new();
    // Long enough to be caught `processing`, well inside the stack's 10 s shutdown grace.
    let stack = StackProcess::start(&dirs, 3_000);
    let client = stack.client();
    let demo = demo_client(&dirs);
    let token = demo_token(&client, &demo).await;
    let id = client.submit(&token, "listener@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record: Value = client.read(&token, &id).await.json().await.unwrap();
        if record["status"] == "processing" {
            break;
        }
        assert_eq!(record["status"], "queued", "{record}");
        assert!(Instant::now() < deadline, "never processing: {record}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (status, log) = stack.interrupt();

    assert!(status.success(), "exit {status:?}; log:\n{log}");
    assert!(log.contains("job done"), "the job finished:\n{log}");
    for failure in ["job failed", "returned to the queue", "Connection refused"] {
        assert!(!log.contains(failure), "`{failure}` in the log:\n{log}");
    }
    // The queue holds nothing of the transcribe job: acked, not delayed for a retry (a
    // failure), not returned, not dead. Its notify job waits for the next start.
    let key = std::fs::read_to_string(dirs.0.join("data/job-signing-key")).unwrap();
    let queue = job_queue::connect(
        None,
        &format!("sqlite:{}", dirs.0.join("data/queue.db").display()),
        "transcribe",
        SigningKey::new(key.trim().as_bytes()).unwrap(),
        QueueConfig::default(),
    )
    .await
    .unwrap();
    let transcribe = queue.stats("transcribe").await.unwrap();
    assert_eq!(
        (
            transcribe.ready,
            transcribe.processing,
            transcribe.delayed,
            transcribe.dead
        ),
        (0, 0, 0, 0),
        "{transcribe:?}"
    );
    let notify = queue.stats("notify").await.unwrap();
    assert_eq!(
        (notify.ready, notify.delayed, notify.dead),
        (1, 0, 0),
        "{notify:?}"
    );
    drop(queue);

    // The next start on the same data directory: completed, and its e-mail goes out.
    let stack = StackProcess::start(&dirs, 3_000);
    let client = stack.client();
    let token = demo_token(&client, &demo).await;
    let record: Value = client.read(&token, &id).await.json().await.unwrap();
    assert_eq!(record["status"], "completed", "{record}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let record: Value = client.read(&token, &id).await.json().await.unwrap();
        if record["notification"]["status"] == "sent" {
            break;
        }
        assert!(Instant::now() < deadline, "notification still {record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, log) = stack.interrupt();
    assert!(status.success(), "exit {status:?}; log:\n{log}");
}
