//! The binaries as an operator runs them, for process tests: [`ServiceProcess`] starts one with
//! an environment of the test's choosing, waits for what it prints, sends it SIGTERM or
//! SIGINT and waits for its exit; [`HeldRequest`] is a request whose body the test holds back,
//! so it is in flight at a moment the test chooses, without relying on timing; and
//! [`ServiceProcess::listening_ports`] shows which TCP ports a process listens on.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a test waits for anything a loaded machine might be slow at: a start, a log line,
/// an exit. Only a broken binary takes this long.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A signal a test sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM, what a supervisor sends.
    Term,
    /// SIGINT, Ctrl-C.
    Int,
}

impl Signal {
    /// Both signals an operator or a supervisor stops a service with.
    pub const STOPPING: [Signal; 2] = [Signal::Term, Signal::Int];

    fn flag(self) -> &'static str {
        match self {
            Signal::Term => "-TERM",
            Signal::Int => "-INT",
        }
    }
}

/// A running binary; SIGKILLed on drop so a failing test leaves nothing behind. Its stdout and
/// stderr go to files in the directory given at start, quoted in every failure message.
pub struct ServiceProcess {
    child: Child,
    name: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl ServiceProcess {
    /// Starts `program args` with only `PATH`, `RUST_LOG=info`, `NO_COLOR=1` and `env` in its
    /// environment; its output goes to `<log_dir>/<name>.{stdout,stderr}`, where `<name>` is
    /// the program's file name and its subcommand (`worker-notifier`).
    pub fn spawn(
        program: impl AsRef<OsStr>,
        args: &[&str],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> ServiceProcess {
        Self::spawn_with(program, args, env, log_dir, |_| {})
    }

    /// [`spawn`](Self::spawn) with `working_dir` as the working directory (a test that checks
    /// what a process leaves there puts `log_dir` elsewhere).
    pub fn spawn_in(
        working_dir: &Path,
        program: impl AsRef<OsStr>,
        args: &[&str],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> ServiceProcess {
        Self::spawn_with(program, args, env, log_dir, |command| {
            command.current_dir(working_dir);
        })
    }

    fn spawn_with(
        program: impl AsRef<OsStr>,
        args: &[&str],
        env: &[(&str, String)],
        log_dir: &Path,
        adjust: impl FnOnce(&mut Command),
    ) -> ServiceProcess {
        let program = program.as_ref();
        let name = Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "process".to_owned());
        let name = match args.first() {
            Some(sub) if !sub.starts_with('-') => format!("{name}-{sub}"),
            _ => name,
        };
        std::fs::create_dir_all(log_dir).expect("the log directory");
        let stdout = log_dir.join(format!("{name}.stdout"));
        let stderr = log_dir.join(format!("{name}.stderr"));
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        adjust(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.to_string_lossy()));
        ServiceProcess {
            child,
            name,
            stdout,
            stderr,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it printed on stderr (its log) so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Both outputs, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- {name} stdout\n{}\n--- {name} stderr\n{}",
            self.stdout(),
            self.stderr(),
            name = self.name
        )
    }

    /// Polls `check` until it gives a value; panics (with the output) when the process exits
    /// first or [`PATIENCE`] runs out.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "{} exited ({status}) before {what}\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {PATIENCE:?}\n{}",
                self.name,
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until a line of its stderr contains `needle`; returns that line.
    pub async fn wait_for_log(&mut self, needle: &str) -> String {
        self.wait_for(&format!("log line `{needle}`"), |p| {
            p.stderr()
                .lines()
                .find(|line| line.contains(needle))
                .map(str::to_owned)
        })
        .await
    }

    /// With `LOG_FORMAT=json`: waits for the event whose message is `message`; returns its
    /// fields (`{"message": …, "addr": …}`).
    pub async fn wait_for_event(&mut self, message: &str) -> serde_json::Value {
        self.wait_for(&format!("log event `{message}`"), |p| {
            p.stderr()
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|event| event["fields"]["message"] == message)
                .map(|event| event["fields"].clone())
        })
        .await
    }

    /// With `LOG_FORMAT=json`: waits for the event `message` and returns its `addr` field.
    pub async fn wait_for_addr(&mut self, message: &str) -> SocketAddr {
        let fields = self.wait_for_event(message).await;
        fields["addr"]
            .as_str()
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {fields}"))
    }

    /// Waits until `GET http://{addr}/healthz` answers 200; panics (with the output) when the
    /// process exits first or [`PATIENCE`] runs out.
    pub async fn wait_healthy(&mut self, addr: SocketAddr) {
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/healthz");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(response) = http.get(&url).send().await
                && response.status() == 200
            {
                return;
            }
            if let Some(status) = self.exit_status() {
                panic!(
                    "{} exited ({status}) before /healthz answered\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: /healthz not 200 within {PATIENCE:?}\n{}",
                self.name,
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends `signal` with `kill(1)`.
    pub fn signal(&self, signal: Signal) {
        let status = Command::new("kill")
            .args([signal.flag(), &self.pid().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill {} {}", signal.flag(), self.pid());
    }

    /// SIGKILL (no shutdown path runs), then reaps the process; [`exit_status`](Self::exit_status)
    /// tells the signal afterwards.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit; panics (with the output) after [`PATIENCE`].
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running {PATIENCE:?} after it was told to stop\n{}",
                self.name,
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends `signal` and asserts that the process exits with status 0 within [`PATIENCE`].
    pub async fn stop_cleanly(&mut self, signal: Signal) {
        self.signal(signal);
        let status = self.wait_exit().await;
        assert_eq!(
            status.code(),
            Some(0),
            "{} after {signal:?}: {status}\n{}",
            self.name,
            self.output()
        );
    }

    /// The TCP ports (IPv4 and IPv6) on which a socket of this process is in the LISTEN state:
    /// the socket inodes among its open file descriptors (`/proc/<pid>/fd`) matched with the
    /// listening entries of `/proc/<pid>/net/tcp{,6}`.
    pub fn listening_ports(&self) -> BTreeSet<u16> {
        let proc = PathBuf::from(format!("/proc/{}", self.pid()));
        let own: BTreeSet<String> = std::fs::read_dir(proc.join("fd"))
            .expect("/proc/<pid>/fd is readable")
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter_map(|target| {
                let target = target.to_string_lossy().into_owned();
                Some(
                    target
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .to_owned(),
                )
            })
            .collect();
        let mut ports = BTreeSet::new();
        for table in ["net/tcp", "net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(proc.join(table)) else {
                continue;
            };
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            for fields in text
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
            {
                let (Some(local), Some(state), Some(inode)) =
                    (fields.get(1), fields.get(3), fields.get(9))
                else {
                    continue;
                };
                if *state != "0A" || !own.contains(*inode) {
                    continue;
                }
                if let Some(port) = local
                    .rsplit_once(':')
                    .and_then(|(_, port)| u16::from_str_radix(port, 16).ok())
                {
                    ports.insert(port);
                }
            }
        }
        ports
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until nothing accepts connections on `addr` any more (a server that stopped
/// accepting has dropped its listener: the connection is refused).
pub async fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect(addr).await {
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An HTTP/1.1 answer.
#[derive(Debug)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The status line and the headers, as received.
    pub head: String,
    /// The body (lossy UTF-8).
    pub body: String,
}

/// A request whose head the server has read and whose body the test still holds: it is sent
/// with `Expect: 100-continue`, and the server's `100 Continue` (which hyper writes when the
/// handler starts reading the body) proves the request reached the handler. The request is
/// then in flight for as long as the test likes; [`finish`](Self::finish) sends the body and
/// reads the answer.
pub struct HeldRequest {
    stream: TcpStream,
    body: Vec<u8>,
}

impl HeldRequest {
    /// Sends the head of `method path` to `addr` with `headers` (plus `Host`,
    /// `Content-Length` of `body` and `Expect: 100-continue`) and waits for `100 Continue`.
    pub async fn start(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> HeldRequest {
        let body = body.into();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("send head");
        let interim = tokio::time::timeout(PATIENCE, read_head(&mut stream, &mut Vec::new()))
            .await
            .expect("an answer to the request head");
        assert!(
            interim.starts_with("HTTP/1.1 100 "),
            "expected 100 Continue (the handler reading the body), got:\n{interim}"
        );
        HeldRequest { stream, body }
    }

    /// Sends the body and reads the whole answer.
    pub async fn finish(mut self) -> HttpAnswer {
        self.stream.write_all(&self.body).await.expect("send body");
        tokio::time::timeout(PATIENCE, async {
            let mut rest = Vec::new();
            let head = read_head(&mut self.stream, &mut rest).await;
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("no status line in {head}"));
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            match length {
                Some(length) => {
                    while rest.len() < length {
                        let mut chunk = [0u8; 4096];
                        let n = self.stream.read(&mut chunk).await.expect("read body");
                        assert!(n > 0, "connection closed inside the body:\n{head}");
                        rest.extend_from_slice(&chunk[..n]);
                    }
                }
                None => {
                    self.stream.read_to_end(&mut rest).await.expect("read body");
                }
            }
            HttpAnswer {
                status,
                head,
                body: String::from_utf8_lossy(&rest).into_owned(),
            }
        })
        .await
        .expect("the answer within PATIENCE")
    }
}

/// Reads up to the end of a head (`\r\n\r\n`); bytes read past it go to `rest`.
async fn read_head(stream: &mut TcpStream, rest: &mut Vec<u8>) -> String {
    let mut buffer = Vec::new();
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            rest.extend_from_slice(&buffer[end + 4..]);
            buffer.truncate(end);
            return String::from_utf8_lossy(&buffer).into_owned();
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read head");
        assert!(
            n > 0,
            "connection closed before a complete head: {}",
            String::from_utf8_lossy(&buffer)
        );
        buffer.extend_from_slice(&chunk[..n]);
    }
}
