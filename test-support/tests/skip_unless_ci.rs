//! The README's rule for tests whose server is unreachable (section "Development"): outside CI
//! the test prints `skipping: …` and passes; in CI (`CI` set to anything but empty, `0` or
//! `false`) it fails. Checked on a real test run as its own process: [`probe`], a test that
//! needs Redis the way every crate's tests ask for it ([`test_support::redis::reachable_url`]), is run by
//! this test binary with `REDIS_URL` on a closed port, once per `CI` value; its output and
//! exit status are what a developer and CI see.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use test_support::net::ClosedPort;

/// Set only in the child process that runs [`probe`].
const PROBE: &str = "TEST_SUPPORT_RUN_PROBE";

/// A test that needs Redis, as the crates' tests are written. It does something only in the
/// child process started by the tests below; in a normal run it passes at once.
#[tokio::test]
async fn probe() {
    if std::env::var_os(PROBE).is_none() {
        return;
    }
    let Some(url) = test_support::redis::reachable_url().await else {
        return;
    };
    panic!("Redis answered at {url}, which should be a closed port");
}

/// `REDIS_URL` of a port that refuses connections while the [`ClosedPort`] lives.
fn closed_redis_url() -> (ClosedPort, String) {
    let port = test_support::net::closed_port();
    let url = format!("redis://127.0.0.1:{port}");
    (port, url)
}

/// Runs [`probe`] in a child process of this test binary with `CI` set to `ci` (`None`:
/// unset).
fn run_probe(ci: Option<&str>, redis_url: &str) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "probe", "--nocapture", "--test-threads", "1"])
        .env(PROBE, "1")
        .env("REDIS_URL", redis_url)
        .env_remove("CI");
    if let Some(ci) = ci {
        command.env("CI", ci);
    }
    command.output().unwrap()
}

fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn outside_ci_a_test_whose_server_is_unreachable_prints_skipping_and_passes() {
    let (_port, url) = closed_redis_url();
    for ci in [None, Some(""), Some("0"), Some("false"), Some("FALSE")] {
        let output = run_probe(ci, &url);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "CI={ci:?}: {}",
            describe(&output)
        );
        assert!(
            stderr.contains(&format!("skipping: Redis unreachable at {url}: ")),
            "CI={ci:?}: {}",
            describe(&output)
        );
        assert!(
            stdout.contains("test probe ... ok") && stdout.contains("1 passed"),
            "CI={ci:?}: {}",
            describe(&output)
        );
    }
}

#[test]
fn in_ci_a_test_whose_server_is_unreachable_fails() {
    let (_port, url) = closed_redis_url();
    for ci in ["true", "1", "yes"] {
        let output = run_probe(Some(ci), &url);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        // 101: the test harness's exit code for failed tests.
        assert_eq!(
            output.status.code(),
            Some(101),
            "CI={ci}: {}",
            describe(&output)
        );
        assert!(
            stderr.contains(&format!(
                "required when CI is on: Redis unreachable at {url}: "
            )),
            "CI={ci}: {}",
            describe(&output)
        );
        assert!(
            !stderr.contains("skipping:"),
            "CI={ci}: {}",
            describe(&output)
        );
        assert!(
            stdout.contains("test probe ... FAILED") && stdout.contains("1 failed"),
            "CI={ci}: {}",
            describe(&output)
        );
    }
}
