//! A real headless browser for the sign-in pages' tests (feature `browser`): Debian's
//! `chromium`, driven over WebDriver by `chromedriver` (Debian's `chromium-driver`) and
//! fantoccini. [`Browser::start`] spawns the driver on a free loopback port and opens a session;
//! the helpers act as a person does (go to a URL, type into a field, click) and read where the
//! tab ended up. Dropping the [`Browser`] kills the driver and every browser process it started.
//!
//! Why this driver and these flags: docs/decisions.md, "The browser test drives Debian's
//! chromium with fantoccini".

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use url::Url;

use crate::ci::skip_unless_ci;
use crate::process::PATIENCE;

/// Debian's chromium (a shell wrapper around `/usr/lib/chromium/chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Debian's `chromium-driver`, of the same version as [`CHROMIUM`].
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The command-line flags the browser gets: headless, no sandbox (CI runs as root, and
/// chromium refuses to start as root with its sandbox), no GPU, and a fixed window so
/// screenshots have one size (1000 × 800 CSS pixels).
pub const CHROMIUM_ARGS: [&str; 4] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--window-size=1000,800",
];

/// The environment variable naming the directory [`Browser::screenshot`] writes to; unset, it
/// writes nothing.
pub const SCREENSHOTS_DIR: &str = "SCREENSHOTS_DIR";

/// How many ports [`Browser::start`] tries when the one it picked was taken in the meantime.
const PORT_ATTEMPTS: usize = 5;

/// A headless chromium with a WebDriver session and its driver. Dropping it kills the
/// driver's process group, so no browser process outlives the test.
pub struct Browser {
    client: Client,
    driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a headless chromium session.
    ///
    /// `None` (after `skipping: …` on stderr) when [`CHROMIUM`] or [`CHROMEDRIVER`] is not
    /// installed and CI is off; in CI a missing one fails the test ([`skip_unless_ci`]).
    /// Installed but failing to start is a failure everywhere (the panic quotes the driver's
    /// output).
    pub async fn start() -> Option<Browser> {
        for program in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(program).exists() {
                return skip_unless_ci(&format!(
                    "{program} is not installed (apt-get install chromium chromium-driver)"
                ));
            }
        }
        let driver = Driver::spawn().await;
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities(&driver.scratch.join("profile")))
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no WebDriver session with {CHROMIUM}: {e}\n{}",
                    driver.output()
                )
            });
        Some(Browser { client, driver })
    }

    /// The fantoccini client, for what the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The driver's process id, which is also its process group: every browser process it
    /// started is in that group until [`close`](Self::close) or drop kills it.
    pub fn driver_pid(&self) -> u32 {
        self.driver.pid
    }

    /// The scratch directory (the driver's output, the browser profile, their `TMPDIR`),
    /// removed on drop.
    pub fn scratch_dir(&self) -> &Path {
        &self.driver.scratch
    }

    /// Navigates the tab to `url` and waits until the page has loaded (WebDriver "Navigate To").
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Clears the field `css` (a CSS selector) and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear `{css}`: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into `{css}`: {e}"));
    }

    /// Clicks the element `css` (a CSS selector); when the click submits a form or follows a
    /// link, returns after the navigation it caused has loaded (WebDriver "Element Click").
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// The URL of the page the tab shows, after every redirect.
    pub async fn current_url(&self) -> Url {
        self.client
            .current_url()
            .await
            .unwrap_or_else(|e| panic!("current URL: {e}"))
    }

    /// Polls the tab's URL until `accept` takes it and returns it; panics after [`PATIENCE`]
    /// naming `what` was awaited and the last URL. For the end of a chain of redirects (a
    /// sign-in ending at the client's `redirect_uri`): a click returns after the navigation it
    /// started, but a form's submission may start just after the click returned.
    pub async fn wait_for_url(&self, what: &str, accept: impl Fn(&Url) -> bool) -> Url {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let url = self.current_url().await;
            if accept(&url) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {PATIENCE:?}; the tab shows {url}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The page's DOM serialised as HTML.
    pub async fn page_source(&self) -> String {
        self.client
            .source()
            .await
            .unwrap_or_else(|e| panic!("page source: {e}"))
    }

    /// Writes a PNG of the tab to `<SCREENSHOTS_DIR>/<name>.png` and returns its path when
    /// [`SCREENSHOTS_DIR`] is set; does nothing and returns `None` otherwise.
    pub async fn screenshot(&self, name: &str) -> Option<PathBuf> {
        let dir = std::env::var_os(SCREENSHOTS_DIR).filter(|dir| !dir.is_empty())?;
        Some(self.screenshot_to(Path::new(&dir), name).await)
    }

    /// Writes a PNG of the tab to `<dir>/<name>.png` (creating `dir`); returns its path.
    pub async fn screenshot_to(&self, dir: &Path, name: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Ends the WebDriver session (chromium quits), then kills what is left of the driver's
    /// process group and waits for the driver's exit. Dropping does the same without the
    /// polite first step.
    pub async fn close(self) {
        let Browser { client, mut driver } = self;
        let _ = tokio::time::timeout(PATIENCE, client.close()).await;
        kill_group(driver.pid);
        let _ = tokio::time::timeout(PATIENCE, driver.child.wait()).await;
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("no element `{css}` on {}: {e}", self.url_for_errors().await),
        }
    }

    async fn url_for_errors(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(no URL: {e})"),
        }
    }
}

/// chromedriver on a loopback port, the leader of a process group of its own (chromium and its
/// helpers inherit the group), with a scratch directory for its output, the browser profile
/// and their `TMPDIR`. Dropping it SIGKILLs the whole group and removes the directory.
struct Driver {
    child: Child,
    pid: u32,
    port: u16,
    scratch: PathBuf,
}

impl Driver {
    /// Spawns chromedriver on a free loopback port and waits until it listens and answers
    /// `GET /status` with `ready: true`. chromedriver reports no port of its own choosing
    /// (`--port=0` prints "port 0"), so a port is picked by binding and releasing it; when
    /// another process takes it in between, chromedriver exits ("bind() failed: Address
    /// already in use") and the next port is tried.
    async fn spawn() -> Driver {
        let http = reqwest::Client::new();
        for _ in 0..PORT_ATTEMPTS {
            let scratch =
                std::env::temp_dir().join(format!("test-browser-{}", uuid::Uuid::new_v4()));
            let tmp = scratch.join("tmp");
            std::fs::create_dir_all(&tmp).expect("the browser's scratch directory");
            let port = crate::net::free_port();
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                // Their temporary files (chromium's singleton socket directory, the driver's
                // scoped directories) go with the scratch directory, even after a SIGKILL.
                .env("TMPDIR", &tmp)
                .stdin(Stdio::null())
                .stdout(File::create(scratch.join("stdout")).expect("the driver's stdout file"))
                .stderr(File::create(scratch.join("stderr")).expect("the driver's stderr file"))
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
            let pid = child.id().expect("a pid while it runs");
            let mut driver = Driver {
                child,
                pid,
                port,
                scratch,
            };
            let deadline = Instant::now() + PATIENCE;
            loop {
                if let Some(status) = driver.child.try_wait().expect("try_wait") {
                    if driver.output().contains("Address already in use") {
                        break;
                    }
                    panic!(
                        "{CHROMEDRIVER} exited ({status}) at start\n{}",
                        driver.output()
                    );
                }
                let started = std::fs::read_to_string(driver.scratch.join("stdout"))
                    .unwrap_or_default()
                    .contains("started successfully");
                if started && ready(&http, port).await {
                    return driver;
                }
                assert!(
                    Instant::now() < deadline,
                    "{CHROMEDRIVER} not ready on port {port} within {PATIENCE:?}\n{}",
                    driver.output()
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            // The port was taken: this driver has exited, its directory goes with it.
        }
        panic!("{CHROMEDRIVER}: {PORT_ATTEMPTS} free ports were taken before it could bind them");
    }

    /// What the driver printed, for failure messages.
    fn output(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.scratch.join(name)).unwrap_or_default();
        format!(
            "--- chromedriver stdout\n{}\n--- chromedriver stderr\n{}",
            read("stdout"),
            read("stderr")
        )
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        kill_group(self.pid);
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
        // A process killed in the middle of a write may still add a file while the directory
        // is being removed; the next attempt gets that one too.
        for _ in 0..20 {
            match std::fs::remove_dir_all(&self.scratch) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => break,
            }
        }
    }
}

/// `goog:chromeOptions` for [`CHROMIUM`] with [`CHROMIUM_ARGS`] and a profile in `profile`
/// (removed with the scratch directory, even when the driver is killed before it cleans up),
/// and a page-load timeout of [`PATIENCE`].
fn capabilities(profile: &Path) -> fantoccini::wd::Capabilities {
    let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    serde_json::from_value(serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        "timeouts": { "pageLoad": PATIENCE.as_millis() as u64, "script": PATIENCE.as_millis() as u64 },
    }))
    .expect("a JSON object")
}

/// chromedriver's `GET /status` says `"ready": true`.
async fn ready(http: &reqwest::Client, port: u16) -> bool {
    let Ok(response) = http
        .get(format!("http://127.0.0.1:{port}/status"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    else {
        return false;
    };
    response
        .json::<serde_json::Value>()
        .await
        .is_ok_and(|status| status["value"]["ready"] == true)
}

/// SIGKILLs the process group `pgid` with `kill(1)` (the workspace forbids `unsafe`, so no
/// `libc::kill`). A group already gone is not an error.
fn kill_group(pgid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
