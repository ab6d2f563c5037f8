//! Running the filesystem scenarios leaves nothing mounted on the host.

use std::process::Command;

fn mount_points() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .collect();
    points.sort();
    points
}

#[test]
fn fs_scenarios_leave_no_host_mounts() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run containers");
        return;
    }
    let before = mount_points();
    for filter in ["rootfs::", "mounts::", "paths::", "ipc::", "capabilities::"] {
        for verb in ["run", "selftest"] {
            let status = Command::new(env!("CARGO_BIN_EXE_palisade"))
                .args([verb, filter])
                .env("PALISADE_RUNTIME", "runc,crun")
                .status()
                .expect("run palisade");
            assert!(status.success(), "palisade {verb} {filter} failed");
        }
    }
    let after = mount_points();
    let added: Vec<&String> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(added.is_empty(), "mounts left on the host: {added:?}");
}
