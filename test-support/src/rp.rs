//! A stock OpenID Connect relying party against the auth server: `auth-server/tests/rp/rp_flow.py`
//! (Python authlib and requests, Debian's `python3-authlib` and `python3-requests`) run by
//! `/usr/bin/python3`. [`run_rp_flow`] drives discovery → PKCE authorization through the login
//! and consent pages → code exchange → id_token validation → userinfo → refresh → SSO →
//! RP-initiated logout → `prompt=none`; [`run_rp_self_test`] checks the script's own pieces
//! offline. Both return the JSON line the script prints per step and its exit status.
//!
//! The script's steps and the authlib pitfalls it works around: docs/plans/sign-in.md §4.

use std::process::{ExitStatus, Stdio};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::ci::skip_unless_ci;
use crate::process::PATIENCE;

/// The interpreter: Debian's, where `python3-authlib` and `python3-requests` live (a pyenv
/// `python3` earlier on `PATH` does not see them).
pub const PYTHON: &str = "/usr/bin/python3";

/// The relying-party script.
pub const RP_FLOW_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../auth-server/tests/rp/rp_flow.py"
);

/// One run of the flow: the auth server's issuer and a registered client, with the user who
/// signs in. No `Debug`: it holds the password and the client secret.
pub struct RpFlow<'a> {
    /// The issuer identifier; authlib validates discovery only for `https://…` or
    /// `http://localhost:PORT` (not `http://127.0.0.1…`).
    pub issuer: &'a str,
    /// The client id.
    pub client_id: &'a str,
    /// The client secret (`client_secret_basic`); `None`: a public client (`none`, RFC 7636
    /// PKCE only).
    pub client_secret: Option<&'a str>,
    /// A registered redirect URI; never contacted (the script stops at the `Location`).
    pub redirect_uri: &'a str,
    /// A registered post-logout redirect URI (RP-Initiated Logout 1.0 §3); never contacted.
    pub post_logout_redirect_uri: &'a str,
    /// The user's e-mail, typed into the login form.
    pub email: &'a str,
    /// The user's password, written to the script's stdin (not its argv).
    pub password: &'a str,
}

/// How a run ended.
#[derive(Debug)]
pub struct RpOutcome {
    /// The script's exit status: 0 when every step passed.
    pub status: ExitStatus,
    /// The JSON object of every line of stdout that is one (`{"step": name, …}`), in order.
    pub steps: Vec<serde_json::Value>,
    /// Its stdout as printed.
    pub stdout: String,
    /// Its stderr (the Python traceback of a failed step).
    pub stderr: String,
}

impl RpOutcome {
    /// The names of the steps printed, in order.
    pub fn step_names(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter_map(|step| step["step"].as_str())
            .collect()
    }

    /// The line of step `name`, if it was printed.
    pub fn step(&self, name: &str) -> Option<&serde_json::Value> {
        self.steps.iter().find(|step| step["step"] == name)
    }

    /// Panics with the script's whole output unless it exited 0.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "rp_flow.py failed ({}) after steps {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.step_names(),
            self.stdout,
            self.stderr
        );
    }
}

/// Runs the whole flow against a running server.
///
/// `None` (after `skipping: …`) when [`PYTHON`] cannot import `authlib` and `requests` and CI
/// is off; in CI that fails the test ([`skip_unless_ci`]). A run longer than twice
/// [`PATIENCE`] fails the test (the script is killed).
pub async fn run_rp_flow(flow: &RpFlow<'_>) -> Option<RpOutcome> {
    let args = [
        flow.issuer,
        flow.client_id,
        flow.client_secret.unwrap_or("-"),
        flow.redirect_uri,
        flow.post_logout_redirect_uri,
        flow.email,
    ];
    run(&args, &format!("{}\n", flow.password)).await
}

/// Runs `rp_flow.py --self-test`: no server; authlib's S256 against RFC 7636 appendix B, the
/// form parser, RS256 and ES256 id_tokens on local keys (a wrong `nonce`, `aud`, `iss` or
/// `at_hash` refused), and which issuers authlib's discovery validation accepts. `None` as for
/// [`run_rp_flow`].
pub async fn run_rp_self_test() -> Option<RpOutcome> {
    run(&["--self-test"], "").await
}

/// `None` (or a CI failure) unless [`PYTHON`] imports both libraries.
async fn python_with_libraries() -> Option<()> {
    let imports = Command::new(PYTHON)
        .args(["-c", "import authlib, requests"])
        .stdin(Stdio::null())
        .output()
        .await;
    match imports {
        Ok(output) if output.status.success() => Some(()),
        Ok(output) => skip_unless_ci(&format!(
            "{PYTHON} cannot import authlib and requests (apt-get install python3-authlib python3-requests): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(e) => skip_unless_ci(&format!(
            "{PYTHON} does not run ({e}; apt-get install python3)"
        )),
    }
}

async fn run(args: &[&str], stdin: &str) -> Option<RpOutcome> {
    python_with_libraries().await?;
    let mut child = Command::new(PYTHON)
        .arg(RP_FLOW_SCRIPT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {PYTHON} {RP_FLOW_SCRIPT}: {e}"));
    let mut input = child.stdin.take().expect("a piped stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write the script's stdin");
    drop(input);
    let output = tokio::time::timeout(2 * PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("rp_flow.py still running after {:?}", 2 * PATIENCE))
        .expect("the script's output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let steps = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(serde_json::Value::is_object)
        .collect();
    Some(RpOutcome {
        status: output.status,
        steps,
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
