//! The one rule for "are we in CI" ([`in_ci`]) and what a test does when a server it needs is
//! unreachable ([`skip_unless_ci`]): outside CI it prints `skipping: …` and passes; in CI it
//! fails, so a missing PostgreSQL or Redis can never turn a CI run green by skipping.

/// CI is on when `CI` is set to anything but empty, `0` or `false` (any case): `CI=true`,
/// `CI=1` and `CI=yes` all count.
pub fn in_ci() -> bool {
    ci_value_means_on(std::env::var("CI").ok().as_deref())
}

/// The rule of [`in_ci`] on a value of `CI` (`None`: unset).
pub fn ci_value_means_on(value: Option<&str>) -> bool {
    match value.map(str::trim) {
        None | Some("" | "0") => false,
        Some(value) => !value.eq_ignore_ascii_case("false"),
    }
}

/// `None` with `skipping: {why}` on stderr outside CI; in CI the test fails (panics) with
/// `required when CI is on: {why}`.
pub fn skip_unless_ci<T>(why: &str) -> Option<T> {
    if in_ci() {
        panic!("required when CI is on: {why}");
    }
    eprintln!("skipping: {why}");
    None
}

#[cfg(test)]
mod tests {
    use super::ci_value_means_on;

    #[test]
    fn ci_is_on_unless_unset_empty_zero_or_false() {
        for off in [
            None,
            Some(""),
            Some(" "),
            Some("0"),
            Some("false"),
            Some("FALSE"),
        ] {
            assert!(!ci_value_means_on(off), "{off:?}");
        }
        for on in [
            Some("true"),
            Some("1"),
            Some("yes"),
            Some("TRUE"),
            Some("on"),
        ] {
            assert!(ci_value_means_on(on), "{on:?}");
        }
    }
}
