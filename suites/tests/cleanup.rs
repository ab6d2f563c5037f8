//! Leaving nothing behind, as a user meets it: unprivileged runs, killed runs and `palisade cleanup`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use palisade_common::testkit::{Test, TestResult, require_root};

fn palisade() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_palisade"))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Copies the three binaries where any user can run them (the target dir may sit in root's home).
fn world_readable_binaries() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod dir");
    for bin in [
        env!("CARGO_BIN_EXE_palisade"),
        env!("CARGO_BIN_EXE_palisade-probe"),
        env!("CARGO_BIN_EXE_palisade-runtime"),
    ] {
        let to = dir.path().join(Path::new(bin).file_name().expect("name"));
        palisade_common::testkit::copy_executable(Path::new(bin), &to).expect("copy binary");
    }
    dir
}

fn an_unprivileged_run_skips_every_scenario_with_its_reason() -> TestResult {
    let bins = world_readable_binaries();
    let mut command = if is_root() {
        // Drop to nobody, as a user without privileges would run it.
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ]);
        c.arg(bins.path().join("palisade"));
        c
    } else {
        Command::new(bins.path().join("palisade"))
    };
    // The bundled runtime: always there, so the test never depends on what else is installed.
    let output = command
        .args(["run", "--runtime"])
        .arg(bins.path().join("palisade-runtime"))
        .current_dir("/")
        .output()
        .expect("palisade runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "unprivileged run must pass with skips\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("0 passed; 0 failed;"), "{stdout}");
    assert!(
        stdout.contains("ignored (needs root with CAP_SYS_ADMIN (running as uid"),
        "{stdout}"
    );
    assert!(stdout.contains("palisade: skipped, by reason:"), "{stdout}");
    Ok(())
}

fn a_killed_run_leaves_nothing_after_palisade_cleanup() -> TestResult {
    require_root()?;
    let runtime = PathBuf::from(env!("CARGO_BIN_EXE_palisade-runtime"));
    // A runtime that SIGKILLs palisade (its parent) the moment a container is about to start:
    // the run dies holding a created container, its bundle, state and cgroups.
    let dir = tempfile::tempdir().expect("tempdir");
    let killer = dir.path().join("runtime-that-kills-palisade");
    palisade_common::testkit::write_executable(
        &killer,
        &format!("#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = start ] && kill -KILL $PPID; done\nexec {} \"$@\"\n", runtime.display()),
    )
    .expect("write wrapper");
    let output = Command::new(palisade())
        .args([
            "run",
            "--test-threads",
            "1",
            "pid::init_is_pid_1",
            "--runtime",
        ])
        .arg(&killer)
        .stderr(Stdio::null())
        .output()
        .expect("palisade runs");
    assert!(!output.status.success(), "palisade should have been killed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let run_id = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("palisade: run ")
                .and_then(|r| r.split_whitespace().next())
        })
        .expect("palisade printed its run id")
        .to_owned();
    let run_dir = std::env::temp_dir().join(format!("palisade-{run_id}"));
    assert!(
        run_dir
            .join("bundles")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "the killed run left no container to clean up"
    );
    let tag = format!("palisade-{run_id}");

    let cleanup = Command::new(palisade())
        .arg("cleanup")
        .output()
        .expect("cleanup runs");
    assert!(
        cleanup.status.success(),
        "cleanup: {}",
        String::from_utf8_lossy(&cleanup.stderr)
    );

    assert!(!run_dir.exists(), "{} is still there", run_dir.display());
    let cgroups: Vec<_> = palisade_harness::lab::cgroups::mount_points()
        .into_iter()
        .flat_map(|m| walk(&m, 3))
        .filter(|p| p.to_string_lossy().contains(&tag))
        .collect();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    let rooted: Vec<i32> = procfs::process::all_processes()
        .expect("proc")
        .filter_map(|p| p.ok())
        .filter(|p| p.root().is_ok_and(|r| r.starts_with(&run_dir)))
        .map(|p| p.pid)
        .collect();
    assert!(rooted.is_empty(), "container processes left: {rooted:?}");
    Ok(())
}

fn walk(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.push(entry.path());
            if depth > 1 {
                found.extend(walk(&entry.path(), depth - 1));
            }
        }
    }
    found
}

fn main() -> std::process::ExitCode {
    palisade_common::testkit::main(&[
        Test::serial(
            "an_unprivileged_run_skips_every_scenario_with_its_reason",
            an_unprivileged_run_skips_every_scenario_with_its_reason,
        ),
        Test::serial(
            "a_killed_run_leaves_nothing_after_palisade_cleanup",
            a_killed_run_leaves_nothing_after_palisade_cleanup,
        ),
    ])
}
