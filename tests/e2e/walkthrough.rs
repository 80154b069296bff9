//! The walkthrough as a newcomer follows it, against the real `stack` binary: the curl lines it
//! prints, pasted into a shell and run with the real `curl` exactly as printed (README: they
//! "work as they are"); and transcription-api's `/metrics`, which carries every part's series
//! (README, worker "Metrics").

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;

use test_support::process::{PATIENCE, ServiceProcess, Signal};

use super::*;

/// `stack` as a newcomer starts it (random ports, a temporary data directory), with its
/// welcome text printed; `extra` flags are added.
async fn start_stack(dirs: &Dirs, extra: &[&str]) -> ServiceProcess {
    let data = dirs.0.join("data").display().to_string();
    let keys = dirs.0.join("keys").display().to_string();
    let mut args = vec![
        "--auth-bind",
        "127.0.0.1:0",
        "--api-bind",
        "127.0.0.1:0",
        "--transcribe-delay-ms",
        "50",
        "--data-dir",
        &data,
        "--keys-dir",
        &keys,
    ];
    args.extend_from_slice(extra);
    let mut stack = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_stack"),
        &args,
        &[],
        &dirs.0.join("logs"),
    );
    // The welcome text ends with step 4's `ls` line.
    stack
        .wait_for("the welcome text", |p| {
            p.stdout()
                .lines()
                .any(|line| line.starts_with("  ls "))
                .then_some(())
        })
        .await;
    stack
}

/// The address the welcome text gives for `service` (`  auth server        http://…`).
fn welcome_addr(stack: &ServiceProcess, service: &str) -> SocketAddr {
    let stdout = stack.stdout();
    stdout
        .lines()
        .find(|line| line.trim_start().starts_with(service))
        .and_then(|line| line.split_whitespace().last())
        .and_then(|url| url.strip_prefix("http://"))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address of {service} in\n{stdout}"))
}

/// The command lines of the welcome text, in order, as printed (without their two-space
/// indent): every line a reader is meant to paste into a shell.
fn printed_commands(stack: &ServiceProcess) -> Vec<String> {
    stack
        .stdout()
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| {
            ["TOKEN=", "ID=", "curl ", "ls "]
                .iter()
                .any(|p| line.starts_with(p))
        })
        .map(str::to_owned)
        .collect()
}

/// One `sh` session, as a terminal a person pastes lines into: variables set by one line are
/// there for the next. Its environment holds only `PATH` (no `~/.curlrc`, no proxy).
struct Shell {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

/// What the shell prints after each command, with the command's exit status: the test's own
/// bookkeeping, not part of the pasted lines.
const DONE: &str = "__command_done__";

impl Shell {
    fn start(dir: &std::path::Path) -> Shell {
        let mut child = Command::new("sh")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sh starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Shell {
            child,
            stdin,
            lines,
        }
    }

    /// Runs `line` as typed and returns what it printed on stdout; panics unless it exits 0.
    fn run(&mut self, line: &str) -> String {
        let (status, output) = self.run_with_status(line);
        assert_eq!(status, "0", "`{line}` failed: {output:?}");
        output
    }

    /// Runs `line` as typed; returns its exit status and what it printed on stdout.
    fn run_with_status(&mut self, line: &str) -> (String, String) {
        writeln!(self.stdin, "{line}").unwrap();
        writeln!(self.stdin, "printf '\\n{DONE} %s\\n' \"$?\"").unwrap();
        self.stdin.flush().unwrap();
        let mut output = Vec::new();
        loop {
            let next = self
                .lines
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("no end of `{line}` within {PATIENCE:?}: {output:?}"));
            if let Some(status) = next.strip_prefix(DONE) {
                return (
                    status.trim().to_owned(),
                    output.join("\n").trim().to_owned(),
                );
            }
            output.push(next);
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` is on the machine; outside CI its absence skips the test (`.ci/run` installs it).
fn curl_installed() -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    found
        || test_support::ci::skip_unless_ci::<()>("curl is not installed (apt-get install curl)")
            .is_some()
}

/// The walkthrough's lines as `stack` prints them, pasted in order into one shell: a token
/// (client_credentials, then again with the demo user's password grant), the submission of the
/// sample (`echo $ID` prints the id), its status read again until it is completed (`queued →
/// processing → completed`, never back), and `ls` of the outbox showing its e-mail. Nothing is
/// substituted: the lines carry the credentials and the addresses of this run.
#[tokio::test]
async fn the_printed_curl_lines_work_as_they_are() {
    if !curl_installed() {
        return;
    }
    let dirs = Dirs::new();
    let mut stack = start_stack(&dirs, &[]).await;
    let commands = printed_commands(&stack);
    let [client_token, user_token, submit, status, ls] = commands.as_slice() else {
        panic!("expected five command lines, got {commands:#?}");
    };
    assert!(
        client_token.contains("grant_type=client_credentials"),
        "{client_token}"
    );
    assert!(user_token.contains("grant_type=password"), "{user_token}");

    let mut shell = Shell::start(&dirs.0);
    for token in [client_token, user_token] {
        assert_eq!(shell.run(token), "", "{token}");
        let id = shell.run(submit);
        assert!(Uuid::parse_str(&id).is_ok(), "`echo $ID` printed {id:?}");

        let order = ["queued", "processing", "completed"];
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let record = loop {
            let out = shell.run(status);
            let record: Value = serde_json::from_str(&out)
                .unwrap_or_else(|e| panic!("{e}: {out}\n{}", stack.output()));
            assert_eq!(record["id"], id.as_str(), "{record}");
            let now = record["status"].as_str().unwrap().to_owned();
            let rank = order.iter().position(|s| *s == now);
            assert!(rank.is_some(), "status {now}: {record}");
            if seen.last() != Some(&now) {
                seen.push(now.clone());
            }
            if now == "completed" {
                break record;
            }
            assert!(Instant::now() < deadline, "still {record} after 60 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        let ranks: Vec<usize> = seen
            .iter()
            .map(|s| order.iter().position(|o| o == s).unwrap())
            .collect();
        assert!(ranks.is_sorted(), "statuses went {seen:?}");
        assert!(
            !record["transcript"].as_str().unwrap_or_default().is_empty(),
            "{record}"
        );

        // Until the first mail is written the outbox does not exist (`ls` fails): a person
        // looks again.
        let mail = format!("{id}.eml");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !shell.run_with_status(ls).1.lines().any(|name| name == mail) {
            assert!(
                Instant::now() < deadline,
                "no {mail} after 60 s\n{}",
                stack.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(shell);
    stack.stop_cleanly(Signal::Int).await;
}

/// The welcome text's sign-in line: its URL (the demo web app on transcription-api's address),
/// opened in a browser, leads through the login and consent pages to "Signed in as" with the
/// demo user of the line and of `demo-credentials.json`.
#[tokio::test]
async fn the_printed_sign_in_url_signs_the_demo_user_in() {
    let dirs = Dirs::new();
    let mut stack = start_stack(&dirs, &[]).await;
    let auth = welcome_addr(&stack, "auth server");
    let api = welcome_addr(&stack, "transcription-api");
    let stdout = stack.stdout();
    let line = stdout
        .lines()
        .find(|line| line.starts_with("Sign in as a person"))
        .unwrap_or_else(|| panic!("no sign-in line in\n{stdout}"));
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap();
    assert_eq!(url, format!("http://{api}/demo/start"), "{line}");
    let credentials: Value =
        serde_json::from_slice(&std::fs::read(dirs.0.join("data/demo-credentials.json")).unwrap())
            .unwrap();
    let email = credentials["user_email"].as_str().unwrap();
    let password = credentials["user_password"].as_str().unwrap();
    assert!(line.contains(&format!("{email} / {password}")), "{line}");

    let browser = sign_in::Browser::new();
    let page = sign_in::sign_in(&browser, url, &format!("http://{auth}"), email, password).await;
    sign_in::assert_signed_in(&page, stack::demo::DEMO_USER_NAME, email);
    stack.stop_cleanly(Signal::Int).await;
}

/// The sample lines of `series` in Prometheus text `text` that carry every label of `labels`.
fn has_series(text: &str, series: &str, labels: &[(&str, &str)]) -> bool {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .any(|line| {
            labels
                .iter()
                .all(|(name, value)| line.contains(&format!("{name}=\"{value}\"")))
        })
}

/// A part of the stack, one of its series, and labels that sample must carry.
type Expected = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// README, worker "Metrics": the one-process stack installs one recorder, and
/// transcription-api's `/metrics` carries every part's series: after one job through the
/// stack it shows the auth server's (tokens issued), the API's (submissions), the
/// transcriber's and notifier's (jobs succeeded) and the queue's (depth per queue and state).
/// The auth server's `/metrics` serves the same recorder.
#[tokio::test]
async fn the_apis_metrics_carry_the_series_of_every_part_of_the_stack() {
    let dirs = Dirs::new();
    let mut stack = start_stack(&dirs, &[]).await;
    let auth = welcome_addr(&stack, "auth server");
    let api = welcome_addr(&stack, "transcription-api");
    let credentials: Value =
        serde_json::from_slice(&std::fs::read(dirs.0.join("data/demo-credentials.json")).unwrap())
            .unwrap();
    let client = Client {
        http: reqwest::Client::new(),
        auth: format!("http://{auth}"),
        api: format!("http://{api}"),
    };
    let token = client
        .token(
            (
                credentials["client_id"].as_str().unwrap(),
                credentials["client_secret"].as_str().unwrap(),
            ),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let token = token["access_token"].as_str().unwrap();
    let id = client.submit(token, "metrics@example.com").await;
    let record = client.until_final(token, &id).await;
    assert_eq!(record["status"], "completed", "{record}");

    let expected: [Expected; 5] = [
        (
            "auth server",
            "oauth_tokens_issued_total",
            &[("grant_type", "client_credentials")],
        ),
        ("transcription-api", "transcriptions_submitted_total", &[]),
        (
            "transcriber",
            "worker_jobs_succeeded_total",
            &[("queue", "transcribe")],
        ),
        (
            "notifier",
            "worker_jobs_succeeded_total",
            &[("queue", "notify")],
        ),
        (
            "queue",
            "worker_queue_depth",
            &[("queue", "transcribe"), ("state", "ready")],
        ),
    ];
    let scrape = async |addr: SocketAddr| {
        let response = client
            .http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    };
    // The notifier's job and the depth gauge (refreshed every 2 s) follow the result.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(api).await;
        let missing: Vec<_> = expected
            .iter()
            .filter(|(_, series, labels)| !has_series(&text, series, labels))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing on the API's /metrics after 60 s: {missing:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = scrape(auth).await;
    for (part, series, labels) in &expected {
        assert!(
            has_series(&text, series, labels),
            "the auth server's /metrics lacks {part}'s {series}\n{text}"
        );
    }
    stack.stop_cleanly(Signal::Int).await;
}
