//! `worker transcriber` and `worker notifier` as a supervisor stops them (README: "Both stop
//! taking jobs on SIGTERM/SIGINT … and return the rest to the queue"): started on an embedded
//! queue of their own, each exits 0 on SIGTERM and on SIGINT once it is running.

use test_support::process::{ServiceProcess, Signal};

use crate::helpers::{SIGNING_KEY, TempDir};

/// Starts `worker <role>` on a fresh embedded queue, waits for "worker started", sends
/// `signal` and expects exit 0 after "worker stopped".
async fn stops_cleanly(role: &str, signal: Signal) {
    let dir = TempDir::new("signals");
    let mut env = vec![
        (
            "QUEUE_DATABASE_URL",
            format!("sqlite:{}", dir.path().join("queue.db").display()),
        ),
        ("JOB_SIGNING_KEY", SIGNING_KEY.to_owned()),
        (
            "OUTBOX_DIR",
            dir.path().join("outbox").display().to_string(),
        ),
    ];
    if role == "transcriber" {
        // Needed to start; nothing is called before a job arrives.
        env.extend([
            ("TRANSCRIPTION_API_URL", "http://127.0.0.1:9".to_owned()),
            ("AUTH_URL", "http://127.0.0.1:9".to_owned()),
            ("WORKER_CLIENT_ID", "signals-test".to_owned()),
            ("WORKER_CLIENT_SECRET", "signals-test-secret".to_owned()),
            (
                "SCRATCH_DIR",
                dir.path().join("scratch").display().to_string(),
            ),
        ]);
    }
    let mut worker = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_worker"),
        &[role],
        &env,
        &dir.path().join("logs"),
    );
    worker.wait_for_log("worker started").await;
    worker.stop_cleanly(signal).await;
    assert!(
        worker.stderr().contains("worker stopped"),
        "{}",
        worker.output()
    );
}

#[tokio::test]
async fn the_transcriber_exits_0_on_sigterm() {
    stops_cleanly("transcriber", Signal::Term).await;
}

#[tokio::test]
async fn the_transcriber_exits_0_on_sigint() {
    stops_cleanly("transcriber", Signal::Int).await;
}

#[tokio::test]
async fn the_notifier_exits_0_on_sigterm() {
    stops_cleanly("notifier", Signal::Term).await;
}

#[tokio::test]
async fn the_notifier_exits_0_on_sigint() {
    stops_cleanly("notifier", Signal::Int).await;
}
