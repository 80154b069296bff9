//! The README's flag tables checked against the binaries' `clap` commands in both directions,
//! so the docs and the flags cannot drift: every documented flag exists with the documented
//! environment fallback, and every flag of a command is documented.

use std::collections::BTreeSet;

/// The workspace README.
fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    std::fs::read_to_string(path).expect("README.md at the workspace root")
}

/// The flag and environment names of the first table under `headings` (each heading found
/// after the previous one) in the workspace README: one `(flags, envs)` pair per row, taken
/// from the `` `--flag` `` and `` `ENV` `` spans of the row's first two cells.
pub fn flag_table(headings: &[&str]) -> Vec<(Vec<String>, Vec<String>)> {
    let readme = readme();
    let mut lines = readme.lines();
    for heading in headings {
        assert!(
            lines.by_ref().any(|line| line.trim() == *heading),
            "README has no `{heading}` heading"
        );
    }
    let spans = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let rows: Vec<(Vec<String>, Vec<String>)> = lines
        .take_while(|line| !line.starts_with('#'))
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let flags: Vec<String> = spans(cells.get(1)?)
                .into_iter()
                .filter(|f| f.starts_with("--"))
                .collect();
            (!flags.is_empty()).then(|| (flags, spans(cells.get(2).unwrap_or(&""))))
        })
        .collect();
    assert!(!rows.is_empty(), "no flag table under {headings:?}");
    rows
}

/// The heading chains (`## …`, then `### …` when the table is under one) of every table in the
/// workspace README that documents flags (a row whose first cell holds a `` `--flag` ``), so a
/// test can see that each is checked by [`assert_flag_table_matches`].
pub fn flag_tables() -> Vec<Vec<String>> {
    let readme = readme();
    let mut tables = Vec::new();
    let (mut h2, mut h3): (Option<&str>, Option<&str>) = (None, None);
    let mut in_code = false;
    let mut in_flag_table = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            (h2, h3) = (Some(heading), None);
        } else if let Some(heading) = line.strip_prefix("### ") {
            h3 = Some(heading);
        }
        if !line.starts_with('|') {
            in_flag_table = false;
            continue;
        }
        let first_cell = line.split('|').nth(1).unwrap_or_default();
        if first_cell.contains("`--") && !in_flag_table {
            in_flag_table = true;
            let chain = [
                h2.map(|h| format!("## {h}")),
                h3.map(|h| format!("### {h}")),
            ];
            tables.push(chain.into_iter().flatten().collect());
        }
    }
    tables
}

/// Checks the README table under `headings` against `commands` (built `clap` commands: a
/// binary, or the subcommands the table documents together), in both directions:
///
/// * every flag of a row is a long flag of at least one of the commands, and the row's env
///   cell names exactly the environment fallbacks of the row's flags, in order (nothing when
///   they have none);
/// * every long flag of every command (but `--help`, `--version` and hidden ones) has a row.
pub fn assert_flag_table_matches(headings: &[&str], commands: &[&clap::Command]) {
    use clap::ArgAction;
    let documented = |arg: &clap::Arg| {
        !arg.is_hide_set()
            && arg.get_long().is_some()
            && !matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    };
    let find = |flag: &str| -> Vec<&clap::Arg> {
        commands
            .iter()
            .flat_map(|command| command.get_arguments())
            .filter(|arg| {
                documented(arg) && arg.get_long().map(|l| format!("--{l}")) == Some(flag.to_owned())
            })
            .collect()
    };
    let rows = flag_table(headings);
    let mut in_table = BTreeSet::new();
    for (flags, envs) in &rows {
        let mut expected_envs = Vec::new();
        for flag in flags {
            let args = find(flag);
            assert!(
                !args.is_empty(),
                "README {headings:?} documents `{flag}`, which the command does not take"
            );
            let env: BTreeSet<Option<String>> = args
                .iter()
                .map(|arg| arg.get_env().map(|e| e.to_string_lossy().into_owned()))
                .collect();
            assert_eq!(
                env.len(),
                1,
                "`{flag}` has different env fallbacks: {env:?}"
            );
            expected_envs.extend(env.into_iter().flatten());
            in_table.insert(flag.clone());
        }
        assert_eq!(
            envs, &expected_envs,
            "README {headings:?}: the env cell of {flags:?} does not name the flags' env fallbacks"
        );
    }
    for command in commands {
        for arg in command.get_arguments().filter(|arg| documented(arg)) {
            let flag = format!("--{}", arg.get_long().unwrap_or_default());
            assert!(
                in_table.contains(&flag),
                "`{} {flag}` is missing from the README table {headings:?}",
                command.get_name()
            );
        }
    }
}
