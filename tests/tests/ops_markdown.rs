//! ops/ Markdown passes pymarkdownlnt (PyPI), a GitHub Flavored Markdown linter, with
//! every rule on but line length (MD013: tables and commands do not wrap).

mod ops_support;

use ops_support::*;
use std::process::Command;

#[test]
fn ops_markdown_passes_pymarkdown() {
    let Some(pymarkdown) = venv_tool("pymarkdown") else {
        return missing("pymarkdown", "PyPI pymarkdownlnt in .venv");
    };
    let out = run(
        Command::new(pymarkdown)
            .args(["--disable-rules", "md013", "scan"])
            .arg(repo_file("ops/capacity-test.md")),
        60,
    );
    assert!(
        out.status.success() && both(&out).trim().is_empty(),
        "pymarkdown:\n{}",
        both(&out)
    );
}
