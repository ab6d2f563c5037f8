//! Running the filesystem scenarios leaves nothing mounted on the host: with the bundled runtime,
//! and with runc and crun where they are installed.

use std::path::PathBuf;
use std::process::Command;

use palisade_common::testkit::{Test, TestResult, require_root};

fn mount_points() -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = palisade_common::mountinfo::read("self")
        .expect("read /proc/self/mountinfo")
        .into_iter()
        .map(|m| m.mount_point)
        .collect();
    points.sort();
    points
}

fn fs_scenarios_leave_no_host_mounts() -> TestResult {
    require_root()?;
    let mut runtimes = vec![env!("CARGO_BIN_EXE_palisade-runtime").to_owned()];
    runtimes.extend(
        ["runc", "crun"]
            .into_iter()
            .filter(|r| palisade_common::find_program(r).is_some())
            .map(str::to_owned),
    );
    let before = mount_points();
    for filter in [
        "rootfs::",
        "mounts::",
        "paths::",
        "ipc::",
        "capabilities::",
        "devices::",
    ] {
        for verb in ["run", "selftest"] {
            let status = Command::new(env!("CARGO_BIN_EXE_palisade"))
                .args([verb, filter])
                .env("PALISADE_RUNTIME", runtimes.join(","))
                .env_remove("PALISADE_REPORT")
                .status()
                .expect("run palisade");
            // Verdicts are the suite test's business (a runtime's known bug may FAIL here); this
            // test needs the run to have finished as a run (0: all passed, 1: a verdict failed).
            assert!(
                matches!(status.code(), Some(0 | 1)),
                "palisade {verb} {filter} did not finish as a run: {status}"
            );
        }
    }
    let after = mount_points();
    let added: Vec<&PathBuf> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(added.is_empty(), "mounts left on the host: {added:?}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    palisade_common::testkit::main(&[Test::new(
        "fs_scenarios_leave_no_host_mounts",
        fs_scenarios_leave_no_host_mounts,
    )])
}
