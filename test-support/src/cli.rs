//! A binary run once, as an operator runs a command, and assertions on what it printed: a
//! start-up failure is one line naming what failed, each cause once ([`assert_start_failures`]),
//! and `--help` never shows the value of a secret-bearing variable
//! ([`assert_help_hides_secrets`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `bin` with exactly `env` (and `PATH`) as its environment and `stdin` as its input.
pub fn run_with_env(bin: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(bin)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// Asserts that a run failed with exit code 1 and one line on stderr that names `thing` and
/// holds no cause twice ([`assert_no_repeated_cause`]); returns that line.
pub fn assert_one_error_line(output: &Output, thing: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr}");
    let line = lines[0];
    assert!(line.contains(thing), "`{line}` does not name `{thing}`");
    assert_no_repeated_cause(line);
    line.to_owned()
}

/// One way a binary can fail at start, and what its error line must say.
#[derive(Debug, Clone)]
pub struct StartFailure {
    /// What goes wrong, for the assertion messages.
    pub case: &'static str,
    /// The command line after the binary's name.
    pub args: Vec<String>,
    /// The whole environment of the run (besides `PATH`).
    pub env: Vec<(&'static str, String)>,
    /// Texts the line must hold: what failed (address, file, `PostgreSQL at host:port`) and,
    /// where it matters, the cause (`Connection refused`).
    pub says: Vec<String>,
}

impl StartFailure {
    /// A case run with `args` and an empty environment, whose line must hold every text of
    /// `says` (the first is what failed).
    pub fn new(case: &'static str, args: &[&str], says: &[&str]) -> StartFailure {
        StartFailure {
            case,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: Vec::new(),
            says: says.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The case with `name=value` added to its environment.
    pub fn env(mut self, name: &'static str, value: impl Into<String>) -> StartFailure {
        self.env.push((name, value.into()));
        self
    }
}

/// Runs `bin` once per case with exactly the case's environment and asserts that it fails with
/// one line, `error: …`, that says what the case lists, each cause once
/// ([`assert_one_error_line`]), and never contains `password`.
pub fn assert_start_failures(bin: &Path, cases: &[StartFailure], password: &str) {
    for failure in cases {
        let args: Vec<&str> = failure.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = failure.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let output = run_with_env(bin, &args, &env, "");
        let (first, rest) = failure.says.split_first().expect("something to say");
        let line = assert_one_error_line(&output, first);
        let case = failure.case;
        assert!(line.starts_with("error: "), "{case}: {line}");
        for said in rest {
            assert!(
                line.contains(said.as_str()),
                "{case}: `{line}` lacks `{said}`"
            );
        }
        assert!(!line.contains(password), "{case}: a password in `{line}`");
    }
}

/// Asserts that an error line says each cause once: no two of its parts (the texts between
/// its `": "` separators) are the same, and no part of twelve or more characters (a cause, not
/// a word like `database`) occurs anywhere else in it.
pub fn assert_no_repeated_cause(line: &str) {
    let body = line.strip_prefix("error: ").unwrap_or(line);
    let parts: Vec<&str> = body.split(": ").map(str::trim).collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "`{part}` appears more than once in `{line}`"
        );
        if part.len() >= 12 {
            assert_eq!(
                body.matches(part).count(),
                1,
                "`{part}` appears more than once in `{line}`"
            );
        }
    }
}

/// Asserts that `value` is an RFC 3339 time in UTC (`2026-11-30T22:48:17.38Z`).
pub fn assert_rfc3339_utc(value: &str) {
    use time::format_description::well_known::Rfc3339;
    assert!(
        value.ends_with('Z') && time::OffsetDateTime::parse(value, &Rfc3339).is_ok(),
        "`{value}` is not an RFC 3339 time in UTC"
    );
}

/// Whether an environment variable can hold a secret, so `--help` must not show its value:
/// URLs (any can carry a password), keys, passwords, secrets and peppers. A `…_FILE` variable
/// holds a path, not the secret; `PASSWORD_HASH_THREADS` is a setting, not a password.
pub fn is_secret_env(name: &str) -> bool {
    !name.ends_with("_FILE")
        && (name.ends_with("_URL")
            || name.ends_with("_KEY")
            || name.ends_with("PASSWORD")
            || name.contains("SECRET")
            || name.contains("PEPPER"))
}

/// Runs `bin --help` and `bin <subcommand…> --help` for every subcommand at every depth, each
/// with every secret-bearing variable it documents ([`is_secret_env`]) set to a URL holding a
/// marker password, and asserts that the marker never appears. Returns the secret-bearing
/// variables it set.
pub fn assert_help_hides_secrets(bin: &Path) -> BTreeSet<String> {
    const MARKER: &str = "help-leak-marker-7c1d";
    let value = format!("postgres://operator:{MARKER}@db.invalid:5432/platform");
    let mut exercised = BTreeSet::new();
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = pending.pop() {
        let help = help(bin, &path);
        let secrets: Vec<String> = env_names(&help)
            .into_iter()
            .filter(|name| is_secret_env(name))
            .collect();
        let env: Vec<(&str, &str)> = secrets
            .iter()
            .map(|name| (name.as_str(), value.as_str()))
            .collect();
        let shown = help_output(bin, &path, &env);
        assert!(
            !shown.contains(MARKER),
            "`{} {} --help` shows a secret:\n{shown}",
            bin.display(),
            path.join(" ")
        );
        exercised.extend(secrets);
        for name in subcommands(&help) {
            let mut next = path.clone();
            next.push(name);
            pending.push(next);
        }
    }
    exercised
}

fn help(bin: &Path, path: &[String]) -> String {
    let output = help_command(bin, path, &[]);
    assert!(
        output.status.success(),
        "`{} {} --help` failed: {}",
        bin.display(),
        path.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Everything `--help` printed, stdout and stderr.
fn help_output(bin: &Path, path: &[String], env: &[(&str, &str)]) -> String {
    let output = help_command(bin, path, env);
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn help_command(bin: &Path, path: &[String], env: &[(&str, &str)]) -> Output {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    run_with_env(bin, &args, env, "")
}

/// The `NAME`s of the `[env: NAME…]` annotations of a help text.
fn env_names(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// The subcommands a help text lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bearing_names() {
        for secret in [
            "DATABASE_URL",
            "REDIS_URL",
            "SMTP_URL",
            "JOB_SIGNING_KEY",
            "CLIENT_SECRET_PEPPER",
            "WORKER_CLIENT_SECRET",
            "AUTH_SECRETS",
            "SMTP_PASSWORD",
        ] {
            assert!(is_secret_env(secret), "{secret}");
        }
        for plain in [
            "KEYS_DIR",
            "WORKER_CLIENT_SECRET_FILE",
            "PASSWORD_HASH_THREADS",
            "BIND",
            "LOG_FORMAT",
        ] {
            assert!(!is_secret_env(plain), "{plain}");
        }
    }

    #[test]
    fn repeated_causes_are_found() {
        assert_no_repeated_cause(
            "error: database: cannot open SQLite database /a/b.db: File exists (os error 17)",
        );
        for repeated in [
            "error: cannot listen on 127.0.0.1:1: Address already in use (os error 98): Address already in use (os error 98)",
            "error: database error: error returned from database: (code: 14) unable to open database file: (code: 14) unable to open database file",
            "error: redis: Connection refused (os error 111): redis: Connection refused (os error 111)",
        ] {
            let caught = std::panic::catch_unwind(|| assert_no_repeated_cause(repeated));
            assert!(caught.is_err(), "{repeated}");
        }
    }

    #[test]
    fn reads_help_texts() {
        let help = "Usage: x <COMMAND>\n\nCommands:\n  serve  Run\n  keys   Keys\n  help   Print\n\nOptions:\n      --database-url <URL>  [env: DATABASE_URL]\n      --bind <A>  [env: BIND=1.2.3.4:5] [default: x]\n";
        assert_eq!(subcommands(help), ["serve", "keys"]);
        assert_eq!(
            env_names(help).into_iter().collect::<Vec<_>>(),
            ["BIND", "DATABASE_URL"]
        );
    }
}
