//! The build profiles the README promises (section "Running the services separately"):
//! `cargo build --release` without debug information but with symbol names, and
//! `--profile profiling` the same optimisations with line tables. Read from the workspace's
//! `Cargo.toml`, the only place profiles are set (there is no `.cargo/config.toml`); building
//! release binaries in a test would take minutes.

use std::collections::BTreeMap;
use std::path::Path;

/// The `key = value` lines of each `[section]` of a Cargo manifest (comments dropped, values
/// as written).
fn sections(manifest: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections = BTreeMap::new();
    let mut current = String::new();
    for line in manifest.lines() {
        let line = line.split(" #").next().unwrap_or_default().trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
            sections
                .entry(current.clone())
                .or_insert_with(BTreeMap::new);
        } else if let Some((key, value)) = line.split_once('=') {
            sections
                .entry(current.clone())
                .or_insert_with(BTreeMap::new)
                .insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    sections
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn release_binaries_carry_no_debug_info_and_profiling_keeps_line_tables() {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let sections = sections(&manifest);
    let setting = |profile: &str, key: &str| {
        sections
            .get(profile)
            .unwrap_or_else(|| panic!("no [{profile}] in Cargo.toml"))
            .get(key)
            .map(String::as_str)
    };
    // No debug information, neither ours nor the standard library's; the symbol table stays.
    assert_eq!(setting("profile.release", "debug"), Some("false"));
    assert_eq!(setting("profile.release", "strip"), Some("\"debuginfo\""));
    // The release build (same optimisations) with file and line numbers, not stripped.
    assert_eq!(
        setting("profile.profiling", "inherits"),
        Some("\"release\"")
    );
    assert_eq!(
        setting("profile.profiling", "debug"),
        Some("\"line-tables-only\"")
    );
    assert_eq!(setting("profile.profiling", "strip"), Some("\"none\""));
    for key in ["opt-level", "lto", "codegen-units", "panic"] {
        assert_eq!(
            setting("profile.profiling", key),
            None,
            "the profiling build must optimise as the release build does"
        );
    }
    // Nothing narrows them for some packages.
    for name in sections.keys() {
        assert!(
            !name.starts_with("profile.release.") && !name.starts_with("profile.profiling."),
            "[{name}] overrides the profile for some packages"
        );
    }
    // No Cargo configuration in the repository overrides the manifest's profiles.
    for config in [".cargo/config.toml", ".cargo/config"] {
        assert!(
            !workspace_root().join(config).exists(),
            "{config} may override the profiles: check it here"
        );
    }
}

#[test]
fn the_manifest_reader_sees_sections_keys_and_values() {
    let parsed = sections(
        "# a comment\n[profile.release]\ndebug = false # no DWARF\nstrip = \"debuginfo\"\n\n[profile.x]\ninherits = \"release\"\n",
    );
    assert_eq!(parsed["profile.release"]["debug"], "false");
    assert_eq!(parsed["profile.release"]["strip"], "\"debuginfo\"");
    assert_eq!(parsed["profile.x"]["inherits"], "\"release\"");
}
