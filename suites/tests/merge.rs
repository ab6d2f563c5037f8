//! `palisade merge` as CI sees it: its exit code (1 on any FAIL, 2 on a report it cannot read),
//! its stdout and the files it writes. The rendering itself is snapshot-tested in the harness.

use std::path::{Path, PathBuf};

use predicates::prelude::*;

fn palisade() -> assert_cmd::Command {
    let mut command =
        assert_cmd::Command::cargo_bin("palisade").expect("the palisade binary is built");
    command.env_remove("PALISADE_REPORT");
    command
}

fn report(host: &str, verdict: &str) -> String {
    let message = if verdict == "fail" {
        r#", "message": "saw the host's hostname""#
    } else {
        ""
    };
    format!(
        r#"{{
          "schema_version": 1,
          "palisade_version": "0.1.0",
          "host": {{"hostname": "{host}", "kernel_release": "6.8.0", "distribution": "Ubuntu 24.04 LTS",
                    "architecture": "x86_64", "cgroup_mode": "v2"}},
          "runtimes": [{{
            "label": "runc", "name": "runc", "version": "runc version 1.1.12", "status": "ready",
            "trials": [
              {{"name": "pid::init_is_pid_1", "verdict": "pass", "duration_secs": 0.2}},
              {{"name": "uts::hostname_is_private", "verdict": "{verdict}", "duration_secs": 0.3{message}}}
            ]
          }}]
        }}"#
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path
}

#[test]
fn passing_reports_merge_to_markdown_on_stdout_and_exit_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.json", &report("host-a", "pass"));
    let b = write(dir.path(), "b.json", &report("host-b", "pass"));
    palisade()
        .arg("merge")
        .args([&a, &b])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "| `uts::hostname_is_private` | pass | pass |",
        ))
        .stdout(predicate::str::contains(
            "**host-a**<br>runc 1.1.12<br>Ubuntu 24.04 LTS · x86_64",
        ))
        .stderr(predicate::str::contains("no FAIL"));
}

#[test]
fn a_fail_in_any_column_exits_1_and_every_report_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.json", &report("host-a", "pass"));
    let b = write(dir.path(), "b.json", &report("host-b", "fail"));
    let out = |name: &str| dir.path().join(name);
    palisade()
        .arg("merge")
        .args([&a, &b])
        .arg("--report")
        .arg(format!(
            "md={},junit={},json={}",
            out("m.md").display(),
            out("m.xml").display(),
            out("m.json").display()
        ))
        .assert()
        .code(1)
        // The Markdown went to its file, not to stdout.
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("FAIL in host-b/runc"));
    let md = std::fs::read_to_string(out("m.md")).expect("md written");
    assert!(
        md.contains("| `uts::hostname_is_private` | pass | **FAIL** [^1] |"),
        "{md}"
    );
    let xml = std::fs::read_to_string(out("m.xml")).expect("junit written");
    let junit = quick_junit::Report::deserialize_from_str(&xml).expect("valid JUnit");
    assert_eq!((junit.tests, junit.failures), (4, 1));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out("m.json")).expect("json written"))
            .expect("valid JSON");
    assert_eq!(json["passed"], false);
}

#[test]
fn an_unreadable_report_is_a_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(dir.path(), "good.json", &report("host-a", "pass"));
    let garbage = write(dir.path(), "garbage.json", "<html>not json</html>");
    palisade()
        .arg("merge")
        .args([&good, &garbage])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(
            "garbage.json is not a Palisade JSON report",
        ))
        .stderr(predicate::str::contains("panicked").not());
    palisade()
        .arg("merge")
        .arg(dir.path().join("missing.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.json"));
    // A FIFO would block a plain read forever.
    let fifo = dir.path().join("fifo.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    palisade()
        .arg("merge")
        .arg(&fifo)
        .timeout(std::time::Duration::from_secs(10))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a regular file"));
}

#[test]
fn tap_is_refused_for_merges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.json", &report("host-a", "pass"));
    palisade()
        .arg("merge")
        .arg(&a)
        .arg("--report")
        .arg(format!("tap={}", dir.path().join("m.tap").display()))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not TAP"));
}

#[test]
fn hosts_can_be_named_by_their_report_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two pods of one DaemonSet: the same hostname would not tell the nodes apart.
    let a = write(dir.path(), "node-1.json", &report("palisade-x7k2p", "pass"));
    palisade()
        .args(["merge", "--host-from-file-name"])
        .arg(&a)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("**node-1**"));
}
