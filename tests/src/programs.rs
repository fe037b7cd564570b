//! Finds the workspace's binaries (`ringcast`, `wsload`) next to the test executable,
//! building them once with the same profile when they are missing or stale.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The target directory of the running test (`target/debug` or `target/release`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps layout")
        .to_path_buf()
}

/// Path of workspace binary `name`, built (once per test process) if needed.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let release = profile_dir().ends_with("release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "ringcast", "-p", "wsload"]);
        if release {
            cmd.arg("--release");
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "cargo build of ringcast/wsload failed");
    });
    let path = profile_dir().join(name);
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// The Python interpreter with `websockets`: `$RINGCAST_PYTHON`, else `.venv/bin/python`
/// at the workspace root (both set up by `.ci/run`), else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("RINGCAST_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}
