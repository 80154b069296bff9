//! Transcription engines: [`SimulatedEngine`] (deterministic text derived from the audio
//! bytes plus a configurable delay, as the original system slept 2 s) and [`CommandEngine`]
//! (runs an external program on the downloaded file and takes its stdout).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;

/// Longest transcript accepted from an engine, in bytes.
pub const MAX_TRANSCRIPT_BYTES: usize = 1024 * 1024;

/// How every owner-facing engine failure text begins.
pub const ENGINE_FAILED: &str = "the audio could not be transcribed";

/// Why an engine produced no transcript.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read the audio file: {0}")]
    Read(#[source] std::io::Error),
    #[error("cannot start the transcription command: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("transcription command timed out after {0:?}")]
    Timeout(Duration),
    #[error("transcription command failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("transcript is not valid UTF-8")]
    NotUtf8,
    #[error("transcript larger than {MAX_TRANSCRIPT_BYTES} bytes")]
    TooLong,
}

impl EngineError {
    /// The reason class shown to the owner of the transcription.
    pub fn class(&self) -> &'static str {
        match self {
            EngineError::Read(_) | EngineError::Spawn(_) => "engine_unavailable",
            EngineError::Timeout(_) => "timeout",
            EngineError::Failed { .. } => "engine_failed",
            EngineError::NotUtf8 | EngineError::TooLong => "bad_transcript",
        }
    }

    /// The text the owner of the transcription sees: `the audio could not be transcribed
    /// (<class>)`. The full error (`Display`, with the command's stderr) is for the operator's
    /// logs only.
    pub fn public_message(&self) -> String {
        format!("{ENGINE_FAILED} ({})", self.class())
    }

    /// `true` when running the engine again on the same audio cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            EngineError::Failed { .. } | EngineError::NotUtf8 | EngineError::TooLong
        )
    }
}

/// Turns an audio file into text.
#[async_trait]
pub trait Engine: Send + Sync {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    async fn transcribe(&self, audio: &Path) -> Result<String, EngineError>;
}

/// Deterministic fake engine: the same bytes always give the same sentence.
#[derive(Debug, Clone)]
pub struct SimulatedEngine {
    delay: Duration,
}

impl SimulatedEngine {
    pub fn new(delay: Duration) -> Self {
        SimulatedEngine { delay }
    }

    /// The transcript of `audio`: a sentence picked by the SHA-256 of the bytes.
    pub fn transcript_for(audio: &[u8]) -> String {
        const SUBJECTS: [&str; 8] = [
            "The committee",
            "Our team",
            "The speaker",
            "A listener",
            "The narrator",
            "Everyone here",
            "The guest",
            "My colleague",
        ];
        const VERBS: [&str; 8] = [
            "discussed",
            "reviewed",
            "announced",
            "questioned",
            "celebrated",
            "explained",
            "postponed",
            "summarised",
        ];
        const OBJECTS: [&str; 8] = [
            "the quarterly results",
            "a new microservice",
            "the release schedule",
            "the weather forecast",
            "an audio transcription",
            "the security review",
            "the migration plan",
            "a surprising idea",
        ];
        const ENDINGS: [&str; 8] = [
            "before lunch",
            "at length",
            "with some hesitation",
            "in great detail",
            "without notes",
            "to general applause",
            "over the phone",
            "once again",
        ];
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, audio);
        let d = digest.as_ref();
        let pick = |i: usize| usize::from(d.get(i).copied().unwrap_or(0)) % 8;
        let fingerprint: String = d.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!(
            "{} {} {} {}. [simulated transcript of {} bytes, {}]",
            SUBJECTS[pick(0)],
            VERBS[pick(1)],
            OBJECTS[pick(2)],
            ENDINGS[pick(3)],
            audio.len(),
            fingerprint
        )
    }
}

#[async_trait]
impl Engine for SimulatedEngine {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn transcribe(&self, audio: &Path) -> Result<String, EngineError> {
        let bytes = tokio::fs::read(audio).await.map_err(EngineError::Read)?;
        let transcript = SimulatedEngine::transcript_for(&bytes);
        tokio::time::sleep(self.delay).await;
        Ok(transcript)
    }
}

/// Runs `program args… <audio path>` and takes its stdout (trimmed) as the transcript. The
/// child is killed when it exceeds the timeout (or when the job is cancelled).
#[derive(Debug, Clone)]
pub struct CommandEngine {
    program: String,
    args: Vec<String>,
    timeout: Duration,
}

impl CommandEngine {
    pub fn new(program: impl Into<String>, args: Vec<String>, timeout: Duration) -> Self {
        CommandEngine {
            program: program.into(),
            args,
            timeout,
        }
    }

    /// From a command line split like a shell would (quotes and backslashes, no expansion).
    pub fn from_command_line(command: &str, timeout: Duration) -> Result<Self, String> {
        let mut words = split_command_line(command)?.into_iter();
        let program = words
            .next()
            .ok_or_else(|| "the engine command is empty".to_owned())?;
        Ok(CommandEngine::new(program, words.collect(), timeout))
    }
}

#[async_trait]
impl Engine for CommandEngine {
    fn name(&self) -> &'static str {
        "command"
    }

    async fn transcribe(&self, audio: &Path) -> Result<String, EngineError> {
        let child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .arg(audio)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(EngineError::Spawn)?;
        // Dropping the `wait_with_output` future on timeout drops the child, which kills it.
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| EngineError::Timeout(self.timeout))?
            .map_err(EngineError::Spawn)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr: String = stderr.trim().chars().take(500).collect();
            return Err(EngineError::Failed {
                status: output.status.to_string(),
                stderr,
            });
        }
        if output.stdout.len() > MAX_TRANSCRIPT_BYTES {
            return Err(EngineError::TooLong);
        }
        let text = String::from_utf8(output.stdout).map_err(|_| EngineError::NotUtf8)?;
        Ok(text.trim().to_owned())
    }
}

/// Splits a command line into words: whitespace separates, `'…'` is literal, `"…"` allows
/// `\"` and `\\`, a backslash outside quotes escapes the next character.
pub fn split_command_line(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' in the engine command".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated \" in the engine command".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" in the engine command".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_like_a_shell() {
        let cases: [(&str, &[&str]); 5] = [
            ("whisper --model base", &["whisper", "--model", "base"]),
            (
                "sh -c 'cat \"$0\" | tr a-z A-Z'",
                &["sh", "-c", "cat \"$0\" | tr a-z A-Z"],
            ),
            (r#"a "b c" d\ e"#, &["a", "b c", "d e"]),
            (r#""x\"y" ''"#, &["x\"y", ""]),
            ("  ", &[]),
        ];
        for (line, expected) in cases {
            assert_eq!(split_command_line(line).unwrap(), expected, "{line}");
        }
        assert!(split_command_line("a 'b").is_err());
    }

    #[test]
    fn simulated_transcripts_are_deterministic() {
        let a = SimulatedEngine::transcript_for(b"audio one");
        assert_eq!(a, SimulatedEngine::transcript_for(b"audio one"));
        assert_ne!(a, SimulatedEngine::transcript_for(b"audio two"));
        assert!(a.contains("9 bytes"));
    }
}
