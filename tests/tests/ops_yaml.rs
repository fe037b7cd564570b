//! Every YAML file under ops/ and grafana/ passes yamllint (Debian yamllint: the default
//! rule set, with lines up to 120 characters and no `---` required).

mod ops_support;

use ops_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn yaml_files_pass_yamllint() {
    let mut files = Vec::new();
    yaml_files(&repo_file("ops"), &mut files);
    yaml_files(&repo_file("grafana"), &mut files);
    assert!(
        files.len() >= 7,
        "expected the ops and grafana YAML files: {files:?}"
    );
    let Some(yamllint) = system_tool("yamllint") else {
        return missing("yamllint", "Debian yamllint");
    };
    run_ok(
        Command::new(yamllint)
            .args(["--strict", "--format", "parsable", "-d"])
            .arg("{extends: default, rules: {line-length: {max: 120}, document-start: disable}}")
            .args(&files),
        60,
    );
}
