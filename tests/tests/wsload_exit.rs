//! wsload's exit status is trustworthy for capacity scripts: failed connections make it
//! exit non-zero after its report, unless `--tolerate` allows them.

mod wsload_support;

use ringcast_tests::programs::binary;
use std::process::{Command, Stdio};
use wsload_support::free_port;

/// `wsload hold` against a port nobody listens on, with `extra` flags.
fn hold_against_nothing(extra: &[&str]) -> (bool, serde_json::Value, String) {
    let url = format!("ws://127.0.0.1:{}/x", free_port());
    let out = Command::new(binary("wsload"))
        .args([
            "hold",
            "--url",
            &url,
            "--connections",
            "4",
            "--duration",
            "0.2",
        ])
        .args(["--connect-timeout", "2"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("running wsload");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report =
        serde_json::from_str(stdout.lines().last().expect("a report line")).expect("JSON report");
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn failed_connections_fail_the_run_after_its_report() {
    let (ok, report, stderr) = hold_against_nothing(&[]);
    assert!(!ok, "exit status must say the run failed: {stderr}");
    assert_eq!(report["failed"], 4, "{report}");
    assert!(
        stderr.contains("4 of 4 connections failed"),
        "the reason is on stderr: {stderr}"
    );
}

#[test]
fn tolerate_allows_the_given_share() {
    let (ok, report, stderr) = hold_against_nothing(&["--tolerate", "100%"]);
    assert!(ok, "{stderr}");
    assert_eq!(report["failed"], 4, "{report}");
    let (ok, _, _) = hold_against_nothing(&["--tolerate", "50%"]);
    assert!(!ok, "4 of 4 is over 50%");
}
