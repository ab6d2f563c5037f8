//! One file to copy: the `palisade` binary alone, in an empty directory, runs the suite against
//! the bundled runtime (which it carries, with the probe) and against runc where installed.

use std::process::Command;

use palisade_common::testkit::{Test, TestResult, require_root};

fn palisade_alone_runs_the_suite() -> TestResult {
    require_root()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("palisade");
    std::fs::copy(env!("CARGO_BIN_EXE_palisade"), &copy).expect("copy palisade");
    let mut runtimes = vec!["palisade-runtime"];
    if palisade_common::find_program("runc").is_some() {
        runtimes.push("runc");
    }
    for runtime in runtimes {
        // A sample of areas that makes every kind of container: the full suite runs elsewhere.
        // `lifecycle::` needs the probe's child to keep running, which the single binary's probe
        // re-executing itself under a name it does not know broke.
        let output = Command::new(&copy)
            .args([
                "run",
                "pid::",
                "rootfs::",
                "kernel::",
                "uts::",
                "lifecycle::",
                "--runtime",
                runtime,
            ])
            .current_dir(dir.path())
            .env_remove("PALISADE_RUNTIME")
            .env_remove("PALISADE_REPORT")
            .output()
            .expect("palisade runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "palisade alone, --runtime {runtime}:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(" 0 failed"), "{stdout}");
    }
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "palisade")
        .collect();
    assert!(
        left.is_empty(),
        "the run wrote next to the binary: {left:?}"
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    palisade_common::testkit::main(&[Test::new(
        "palisade_alone_runs_the_suite",
        palisade_alone_runs_the_suite,
    )])
}
