//! What the binaries' `main`s share: parsing the command line (with the flags every binary
//! has: [`LogFormat`], [`secret`] values), the log set-up and reporting a failure. A failure is
//! one line on stderr, `error: …`, or with `--json` the object `{"error": "…"}`; exit codes
//! stay 1 for a failure and 2 for a usage error.

use std::error::Error;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

use secrecy::SecretString;

/// Default log level of the servers and worker loops (`RUST_LOG` overrides it).
pub const SERVICE_LOG_LEVEL: &str = "info";
/// Default log level of one-shot commands (admin CLI, migrations, queue operations): quiet
/// unless something is wrong (`RUST_LOG` overrides it).
pub const COMMAND_LOG_LEVEL: &str = "warn";

/// Parses the process's arguments. `Err` carries the exit code after the usage error (as JSON
/// when `--json` is among the arguments), `--help` or `--version` has been printed.
pub fn parse<P: clap::Parser>() -> Result<P, ExitCode> {
    parse_from(std::env::args_os())
}

/// [`parse`] of the given arguments (the first is the program name).
pub fn parse_from<P, I, T>(args: I) -> Result<P, ExitCode>
where
    P: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    match P::try_parse_from(&args) {
        Ok(parsed) => Ok(parsed),
        Err(err) => {
            if err.use_stderr() && wants_json(&args) {
                print_json_error(&usage_line(&err));
            } else {
                let _ = err.print();
            }
            Err(ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2)))
        }
    }
}

/// Whether `--json` was given (before a `--`).
fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|arg| *arg != "--")
        .any(|arg| arg == "--json")
}

/// The first paragraph of clap's message, on one line and without its `error: ` prefix.
pub fn usage_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let paragraph: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .collect();
    let line = paragraph.join(" ");
    let line = line.strip_prefix("error:").unwrap_or(&line);
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reports a failed command on stderr as one line ([`crate::error_line`]), as JSON with
/// `json`, and returns exit code 1.
pub fn fail(err: &(dyn Error + 'static), json: bool) -> ExitCode {
    let line = crate::error_line(err);
    if json {
        print_json_error(&line);
    } else {
        eprintln!("error: {line}");
    }
    ExitCode::FAILURE
}

fn print_json_error(line: &str) {
    eprintln!("{}", serde_json::json!({ "error": line }));
}

/// How the binaries write their log lines (`--log-format`, `LOG_FORMAT`): `pretty`, text for
/// a person, coloured only on a terminal ([`init_logs`]); `json`, one JSON object per line for
/// a log collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// The value parser of a flag that holds a secret (`value_parser = plumbing::cli::secret`):
/// the value as given, wrapped so that `Debug` never shows it. Pair it with
/// `hide_env_values = true`, so `--help` does not show it either. Never fails.
pub fn secret(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.to_owned()))
}

/// Installs the tracing subscriber on stderr: JSON lines or text, filtered by `RUST_LOG`, else
/// `default_level` ([`SERVICE_LOG_LEVEL`] or [`COMMAND_LOG_LEVEL`]). Text is coloured (ANSI
/// escape codes) only when stderr is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>): a log written to a file or a pipe holds plain text.
pub fn init_logs(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Whether log text is coloured: on a terminal, unless `NO_COLOR` holds a value.
fn colours(terminal: bool, no_color: Option<OsString>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    }

    #[test]
    fn usage_errors_become_one_line() {
        use clap::Parser;
        let err = Flags::try_parse_from(["x", "--json"]).unwrap_err();
        assert_eq!(
            usage_line(&err),
            "the following required arguments were not provided: --name <NAME>"
        );
        let err = Flags::try_parse_from(["x", "--nope"]).unwrap_err();
        assert_eq!(usage_line(&err), "unexpected argument '--nope' found");
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some(OsString::new())));
        assert!(!colours(true, Some(OsString::from("1"))));
        assert!(!colours(false, None));
        assert!(!colours(false, Some(OsString::new())));
    }

    #[test]
    fn log_formats_are_pretty_and_json() {
        use clap::ValueEnum;
        let names: Vec<String> = LogFormat::value_variants()
            .iter()
            .filter_map(|format| format.to_possible_value())
            .map(|value| value.get_name().to_owned())
            .collect();
        assert_eq!(names, ["pretty", "json"]);
        assert_eq!(LogFormat::default(), LogFormat::Pretty);
    }

    #[test]
    fn secrets_are_kept_as_given_and_hidden_from_debug() {
        use secrecy::ExposeSecret;
        let parsed = secret("postgres://u:pw@h/db").unwrap();
        assert_eq!(parsed.expose_secret(), "postgres://u:pw@h/db");
        assert!(!format!("{parsed:?}").contains("pw"));
    }

    #[test]
    fn json_is_wanted_before_a_double_dash_only() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_json(&args(&["x", "a", "--json"])));
        assert!(!wants_json(&args(&["x", "--", "--json"])));
        assert!(!wants_json(&args(&["--json"])));
    }
}
