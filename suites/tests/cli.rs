//! The `palisade` command as users and CI see it: exit codes, error lines, reports. The runtimes
//! here are shell scripts that misbehave in one precise way, and the real `runc`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use palisade_common::testkit::{Skip, Test, TestResult, require_program, require_root};
use predicates::prelude::*;

fn palisade() -> assert_cmd::Command {
    let mut command =
        assert_cmd::Command::cargo_bin("palisade").expect("the palisade binary is built");
    // The caller's environment must not pick runtimes or reports for the test.
    command
        .env_remove("PALISADE_RUNTIME")
        .env_remove("PALISADE_REPORT")
        .env_remove("PALISADE_RUNTIME_TIMEOUT");
    command
}

/// Writes an executable shell script standing in for a runtime.
fn fake_runtime(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    palisade_common::testkit::write_executable(&path, &format!("#!/bin/sh\n{body}\n"))
        .expect("write the fake runtime");
    path
}

/// A runtime that answers `--version` and exits 0 for every verb without doing anything.
fn do_nothing_runtime(dir: &Path) -> PathBuf {
    fake_runtime(
        dir,
        "nothing",
        &format!(
            "{FIND_VERB}\nif [ \"$verb\" = --version ]; then echo 'nothing 0.0.1'; fi\nexit 0"
        ),
    )
}

/// The verb of a runc-style command line (`--root <dir> create ...`).
const FIND_VERB: &str = r#"verb=""
for arg in "$@"; do
  case "$arg" in
    --version|create|start|state|kill|delete) verb="$arg"; break ;;
  esac
done"#;

fn stderr_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn a_missing_runtime_is_exit_2_and_one_error_line() -> TestResult {
    let output = palisade()
        .args(["run", "--runtime", "/nonexistent"])
        .output()
        .expect("palisade runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_eq!(
        stderr_lines(&output),
        ["palisade: error: runtime `/nonexistent` does not exist"],
        "{output:?}"
    );
    Ok(())
}

fn a_bad_report_spec_is_a_usage_error() -> TestResult {
    palisade()
        .args(["run", "--report", "html=x.html"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown report format `html`"));
    Ok(())
}

fn a_runtime_that_hangs_in_create_is_named_and_killed() -> TestResult {
    require_root()?;
    let dir = tempfile::tempdir().expect("tempdir");
    // `exec`, so the runner's kill of the process group leaves no sleeper behind.
    let runtime = fake_runtime(
        dir.path(),
        "hangs",
        &format!(
            "{FIND_VERB}\nif [ \"$verb\" = --version ]; then echo 'hangs 0.0.1'; exit 0; fi\nexec sleep infinity"
        ),
    );
    let started = Instant::now();
    let output = palisade()
        .args(["run", "--runtime"])
        .arg(&runtime)
        .env("PALISADE_RUNTIME_TIMEOUT", "2")
        .timeout(Duration::from_secs(60))
        .output()
        .expect("palisade runs");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr.contains("runtime hung in `create` after 2 s (killed)"),
        "{stderr}"
    );
    // create, then the cleanup's kill and delete, each cut off at 2 s.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    Ok(())
}

fn a_runtime_that_does_nothing_gets_a_clear_verdict() -> TestResult {
    require_root()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = do_nothing_runtime(dir.path());
    let output = palisade()
        .args(["run", "--runtime"])
        .arg(&runtime)
        .env("PALISADE_RUNTIME_TIMEOUT", "2")
        .timeout(Duration::from_secs(60))
        .output()
        .expect("palisade runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr.contains("the runtime reported success for `create` but wrote no pid file"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}

fn a_runtime_whose_state_is_garbage_fails_clearly_and_reports_it() -> TestResult {
    require_root()?;
    require_program("runc")?;
    let dir = tempfile::tempdir().expect("tempdir");
    // runc for everything but `state`, which prints something that is not an OCI state.
    let runtime = fake_runtime(
        dir.path(),
        "garbled",
        &format!(
            "{FIND_VERB}\nif [ \"$verb\" = state ]; then echo 'all good, trust me'; exit 0; fi\nexec runc \"$@\""
        ),
    );
    let junit = dir.path().join("report.xml");
    let output = palisade()
        .args([
            "run",
            "--exact",
            "pid::host_sees_an_ordinary_process",
            "--runtime",
        ])
        .arg(&runtime)
        .arg("--report")
        .arg(format!("junit={}", junit.display()))
        .timeout(Duration::from_secs(120))
        .output()
        .expect("palisade runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stdout.contains("`garbled state` printed something that is not an OCI state"),
        "{stdout}"
    );
    let report = quick_junit::Report::deserialize_from_str(
        &fs::read_to_string(&junit).expect("the JUnit report is written"),
    )
    .expect("the JUnit report parses");
    assert_eq!((report.tests, report.failures), (1, 1), "{report:?}");
    Ok(())
}

fn reports_are_valid_junit_tap_json_and_markdown() -> TestResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    // A missing runtime is a column of the matrix, not an error; without root every trial is a
    // skip, which the reports must carry just the same.
    let output = palisade()
        .args([
            "matrix",
            "--exact",
            "pid::init_is_pid_1",
            "--runtimes",
            "runc,/nonexistent/runtime",
        ])
        .arg("--report")
        .arg(format!(
            "junit={},tap={},json={},md={}",
            path("r.xml").display(),
            path("r.tap").display(),
            path("r.json").display(),
            path("r.md").display()
        ))
        .timeout(Duration::from_secs(120))
        .output()
        .expect("palisade runs");
    assert_eq!(output.status.code(), Some(0), "{output:?}");

    let junit = quick_junit::Report::deserialize_from_str(
        &fs::read_to_string(path("r.xml")).expect("junit written"),
    )
    .expect("the JUnit report parses");
    let suites: Vec<_> = junit.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(suites, ["runc", "runtime"]);
    assert_eq!(junit.tests, 2);
    assert_eq!(junit.test_suites[1].skipped, 1);

    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(path("r.json")).expect("json written"))
            .expect("the JSON report parses");
    assert_eq!(json["runtimes"][1]["status"], "unavailable");
    assert_eq!(
        json["runtimes"][0]["trials"][0]["name"],
        "pid::init_is_pid_1"
    );
    assert!(json["host"]["kernel_release"].is_string());

    let tap = fs::read_to_string(path("r.tap")).expect("tap written");
    assert!(tap.starts_with("TAP version 13\n1..2\n"), "{tap}");

    let md = fs::read_to_string(path("r.md")).expect("md written");
    assert!(md.contains("| `pid::init_is_pid_1` |"), "{md}");
    assert!(md.contains("runtime — not available"), "{md}");
    // Last: without prove, everything above was still checked.
    check_tap_with_prove(&path("r.tap"))
}

/// `prove` (Perl's TAP harness) is the reference parser; it reports parse errors on bad TAP.
fn check_tap_with_prove(tap: &Path) -> TestResult {
    require_program("prove")?;
    let output = Command::new("prove")
        .arg("-e")
        .arg("cat")
        .arg(tap)
        .output()
        .map_err(|e| Skip(format!("cannot run prove: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("Parse errors"), "{text}");
    assert!(output.status.success(), "{text}");
    Ok(())
}

fn the_matrix_has_a_column_for_missing_and_broken_runtimes() -> TestResult {
    require_root()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = do_nothing_runtime(dir.path());
    let output = palisade()
        .args(["matrix", "--exact", "pid::init_is_pid_1", "--runtimes"])
        .arg(format!("{},palisade-no-such-runtime", broken.display()))
        .env("PALISADE_RUNTIME_TIMEOUT", "2")
        .timeout(Duration::from_secs(60))
        .output()
        .expect("palisade runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The failed preflight is a failure, even though the filter leaves its trial out.
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stdout.contains(
            "| Scenario | nothing 0.0.1 — preflight failed [^1] | palisade-no-such-runtime — not available [^2] |"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("[^1]: `nothing` could not run a trivial container: the runtime reported success for `create` but wrote no pid file"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[^2]: runtime `palisade-no-such-runtime` not found on PATH"),
        "{stdout}"
    );
    Ok(())
}

fn bench_start_prints_runtimes_side_by_side() -> TestResult {
    require_root()?;
    require_program("runc")?;
    let bundled = env!("CARGO_BIN_EXE_palisade-runtime");
    let output = palisade()
        .args(["bench", "start", "--iterations", "3", "--runtimes"])
        .arg(format!("{bundled},runc"))
        .output()
        .expect("palisade runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("median ratio"), "{stdout}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("palisade-runtime ") || l.starts_with("runc "))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(
        rows[0].trim_end().ends_with("1.00"),
        "the first runtime is the base of the ratios: {stdout}"
    );
    Ok(())
}

fn selftest_exact_names_the_scenario_not_its_control_trial() -> TestResult {
    require_root()?;
    let output = palisade()
        .args(["selftest", "--exact", "pid::init_is_pid_1"])
        .output()
        .expect("palisade runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("selftest::pid::init_is_pid_1 ... ok"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed; 0 failed"), "{stdout}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    palisade_common::testkit::main(&[
        Test::new(
            "a_missing_runtime_is_exit_2_and_one_error_line",
            a_missing_runtime_is_exit_2_and_one_error_line,
        ),
        Test::new(
            "a_bad_report_spec_is_a_usage_error",
            a_bad_report_spec_is_a_usage_error,
        ),
        Test::new(
            "a_runtime_that_hangs_in_create_is_named_and_killed",
            a_runtime_that_hangs_in_create_is_named_and_killed,
        ),
        Test::new(
            "a_runtime_that_does_nothing_gets_a_clear_verdict",
            a_runtime_that_does_nothing_gets_a_clear_verdict,
        ),
        Test::new(
            "a_runtime_whose_state_is_garbage_fails_clearly_and_reports_it",
            a_runtime_whose_state_is_garbage_fails_clearly_and_reports_it,
        ),
        Test::new(
            "reports_are_valid_junit_tap_json_and_markdown",
            reports_are_valid_junit_tap_json_and_markdown,
        ),
        Test::new(
            "the_matrix_has_a_column_for_missing_and_broken_runtimes",
            the_matrix_has_a_column_for_missing_and_broken_runtimes,
        ),
        Test::new(
            "bench_start_prints_runtimes_side_by_side",
            bench_start_prints_runtimes_side_by_side,
        ),
        Test::new(
            "selftest_exact_names_the_scenario_not_its_control_trial",
            selftest_exact_names_the_scenario_not_its_control_trial,
        ),
    ])
}
