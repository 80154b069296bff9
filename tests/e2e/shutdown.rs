//! Ctrl-C with a job in flight, against the real binary: the workers stop taking jobs and
//! finish the one they hold while both servers still answer its reports; then the servers
//! stop. The job is completed, never failed or retried, and the next start finds it done.

use job_queue::{QueueConfig, SigningKey};
use test_support::process::{ServiceProcess, Signal};

use super::*;

/// `stack` started as a newcomer would, on random ports in a temporary data directory, with
/// JSON logs collected; killed if a test ends while it still runs.
struct StackProcess {
    process: ServiceProcess,
    auth: String,
    api: String,
}

impl StackProcess {
    async fn start(dirs: &Dirs, transcribe_delay_ms: u64) -> StackProcess {
        let delay = transcribe_delay_ms.to_string();
        let (data, keys) = (dirs.0.join("data"), dirs.0.join("keys"));
        let (data, keys) = (data.display().to_string(), keys.display().to_string());
        let mut process = ServiceProcess::spawn(
            env!("CARGO_BIN_EXE_stack"),
            &[
                "--auth-bind",
                "127.0.0.1:0",
                "--api-bind",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--transcribe-delay-ms",
                &delay,
                "--data-dir",
                &data,
                "--keys-dir",
                &keys,
            ],
            &[],
            &dirs.0.join("logs"),
        );
        // The welcome text names the bound addresses.
        let (auth, api) = process
            .wait_for("the addresses", |p| {
                let stdout = p.stdout();
                let url = |service: &str| {
                    stdout
                        .split_inclusive('\n')
                        .filter(|line| line.ends_with('\n'))
                        .find(|line| line.trim_start().starts_with(service))
                        .and_then(|line| line.split_whitespace().last())
                        .map(str::to_owned)
                };
                Some((url("auth server ")?, url("transcription-api ")?))
            })
            .await;
        StackProcess { process, auth, api }
    }

    fn client(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            auth: self.auth.clone(),
            api: self.api.clone(),
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit status, at most
    /// [`PATIENCE`](test_support::process::PATIENCE) (60 s); the status and the whole log.
    async fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        self.process.signal(Signal::Int);
        let status = self.process.wait_exit().await;
        (status, self.process.stderr())
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
    let stack = StackProcess::start(&dirs, 3_000).await;
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

    let (status, log) = stack.interrupt().await;

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
    let stack = StackProcess::start(&dirs, 3_000).await;
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
    let (status, log) = stack.interrupt().await;
    assert!(status.success(), "exit {status:?}; log:\n{log}");
}
