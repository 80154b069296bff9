//! The simulated and command engines.

use std::time::{Duration, Instant};

use worker::engine::{CommandEngine, Engine, EngineError, SimulatedEngine};

use crate::helpers::TempDir;

fn audio_file(dir: &TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn simulated_engine_is_deterministic_and_waits_the_delay() {
    let dir = TempDir::new("engine");
    let a = audio_file(&dir, "a", b"first audio");
    let a_copy = audio_file(&dir, "a2", b"first audio");
    let b = audio_file(&dir, "b", b"second audio");
    let engine = SimulatedEngine::new(Duration::from_millis(100));
    let started = Instant::now();
    let first = engine.transcribe(&a).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(first, engine.transcribe(&a_copy).await.unwrap());
    assert_ne!(first, engine.transcribe(&b).await.unwrap());
    assert_eq!(
        first,
        "The narrator postponed a new microservice at length. \
         [simulated transcript of 11 bytes, 34f6d9f1]"
    );
    assert_eq!(
        SimulatedEngine::transcript_for(b"second audio"),
        "The speaker discussed an audio transcription without notes. \
         [simulated transcript of 12 bytes, 0a2824bc]"
    );
}

#[tokio::test]
async fn command_engine_captures_stdout() {
    let dir = TempDir::new("engine-cmd");
    let audio = audio_file(&dir, "a", b"  spoken words  \n");
    let engine = CommandEngine::new("cat", vec![], Duration::from_secs(5));
    assert_eq!(engine.transcribe(&audio).await.unwrap(), "spoken words");

    let shell = CommandEngine::from_command_line(
        r#"sh -c 'printf "%s bytes" "$(wc -c < "$1" | tr -d " ")"' sh"#,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(shell.transcribe(&audio).await.unwrap(), "17 bytes");
}

#[tokio::test]
async fn command_engine_is_killed_on_timeout() {
    let dir = TempDir::new("engine-timeout");
    let audio = audio_file(&dir, "a", b"x");
    let engine = CommandEngine::new(
        "sh",
        vec!["-c".into(), "exec sleep 10".into(), "sh".into()],
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let err = engine.transcribe(&audio).await.unwrap_err();
    assert!(matches!(err, EngineError::Timeout(_)), "{err:?}");
    assert!(!err.is_permanent());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn command_engine_failure_is_permanent_and_missing_program_transient() {
    let dir = TempDir::new("engine-fail");
    let audio = audio_file(&dir, "a", b"x");
    let failing = CommandEngine::new(
        "sh",
        vec![
            "-c".into(),
            "echo broken audio >&2; exit 3".into(),
            "sh".into(),
        ],
        Duration::from_secs(5),
    );
    let err = failing.transcribe(&audio).await.unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert!(err.to_string().contains("broken audio"), "{err}");

    let missing = CommandEngine::new("/nonexistent/engine", vec![], Duration::from_secs(5));
    let err = missing.transcribe(&audio).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Spawn(_)) && !err.is_permanent(),
        "{err:?}"
    );
}
