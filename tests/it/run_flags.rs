//! `ckan-webhooks run` refuses bad delivery settings before touching the database, with
//! one line that names the flag and the value.

use std::process::Command;

/// Runs `run` with valid required flags plus `extra`; returns (exit code, stderr).
fn run_with(extra: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ckan-webhooks"))
        .arg("run")
        // Never reached: validation comes first.
        .args(["--database-url", "postgres://nobody@127.0.0.1:1/none"])
        .args(["--site-url", "http://ckan.test"])
        .args(["--token-secret", "string:secret"])
        .args(extra)
        .env("RUST_LOG", "error")
        .output()
        .expect("run the binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_delivery_settings_are_refused_in_one_line_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--disable-after-hours", "0"],
            "invalid --disable-after-hours 0",
        ),
        (&["--retention-days", "0"], "invalid --retention-days 0"),
        (&["--max-age-hours", "0"], "invalid --max-age-hours 0"),
        (
            &["--lease-secs", "5"],
            "invalid --lease-secs 5: must exceed --delivery-timeout-secs (10)",
        ),
        (
            &["--delivery-timeout-secs", "30", "--lease-secs", "30"],
            "invalid --lease-secs 30",
        ),
        (
            &["--per-destination-concurrency", "0"],
            "invalid --per-destination-concurrency 0",
        ),
        (
            &["--concurrency", "4", "--per-destination-concurrency", "9"],
            "invalid --per-destination-concurrency 9: must be from 1 to --concurrency (4)",
        ),
        (
            &["--retention-days", "99999999999999999"],
            "invalid --retention-days 99999999999999999",
        ),
        (&["--mode", "sometimes"], "invalid --mode \"sometimes\""),
        (&["--poll-cycle-secs", "0"], "invalid --poll-cycle-secs 0"),
        (
            &["--state-database-url", "not a url"],
            "invalid --state-database-url \"not a url\"",
        ),
    ];
    for (flags, expected) in cases {
        let (code, stderr) = run_with(flags);
        assert_eq!(code, Some(1), "{flags:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
}

#[test]
fn the_settings_are_also_read_from_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_ckan-webhooks"))
        .arg("run")
        .args(["--database-url", "postgres://nobody@127.0.0.1:1/none"])
        .args(["--site-url", "http://ckan.test"])
        .args(["--token-secret", "string:secret"])
        .env("CKAN_WEBHOOKS_DISABLE_AFTER_HOURS", "0")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid --disable-after-hours 0"),
        "{stderr}"
    );
}
