//! Palisade's scenarios, one file per area, and the entry points shared by the `palisade` command
//! and `cargo test`.

pub mod bench;
pub mod capabilities;
pub mod cgroups;
pub mod devices;
pub mod engine_net;
pub mod entry;
pub mod exec;
pub mod image;
pub mod ipc;
pub mod kernel;
pub mod lifecycle;
pub mod mounts;
pub mod namespaces;
pub mod nat;
pub mod network;
pub mod nsenter;
pub mod paths;
pub mod pid;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod user;
pub mod uts;

use palisade_harness::Scenario;

/// Every scenario, in the order they are listed and run.
pub fn all() -> Vec<&'static Scenario> {
    [
        pid::SCENARIOS,
        namespaces::SCENARIOS,
        user::SCENARIOS,
        exec::SCENARIOS,
        nsenter::SCENARIOS,
        lifecycle::SCENARIOS,
        uts::SCENARIOS,
        kernel::SCENARIOS,
        rootfs::SCENARIOS,
        paths::SCENARIOS,
        mounts::SCENARIOS,
        ipc::SCENARIOS,
        capabilities::SCENARIOS,
        rlimits::SCENARIOS,
        devices::SCENARIOS,
        seccomp::SCENARIOS,
        network::SCENARIOS,
        nat::SCENARIOS,
        cgroups::SCENARIOS,
        image::SCENARIOS,
        engine_net::SCENARIOS,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The README's scenario table: the promise each scenario checks, its negative control, and what a
/// failure means for a user's security.
pub fn scenario_table() -> String {
    let mut table = String::from(
        "| scenario | what it checks | negative control (must FAIL) | a failure means |\n|---|---|---|---|\n",
    );
    for scenario in all() {
        table.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            scenario.full_name(),
            scenario.checks,
            scenario.control,
            scenario.means
        ));
    }
    table
}

/// Bugs of third-party runtimes that `cargo test` (Palisade's own test run) reports as ignored,
/// each with its explanation in the README matrix. `palisade run` reports them as what they are:
/// FAIL.
pub fn known_bugs() -> Vec<palisade_harness::run::runner::KnownBug> {
    use palisade_harness::lab::host::CgroupMode::{Hybrid, V1, V2};
    use palisade_harness::run::runner::KnownBug;
    let v1_cgroup_tmpfs = "on cgroup v1 it mounts the tmpfs at /sys/fs/cgroup read-write although the config says `ro`";
    vec![
        KnownBug {
            runtime: "runc",
            version_prefix: "runc version 1.1",
            cgroup_modes: &[V1, Hybrid],
            trial: "paths::sys_is_readonly",
            reason: v1_cgroup_tmpfs,
        },
        KnownBug {
            runtime: "crun",
            version_prefix: "crun version 1.8",
            cgroup_modes: &[V1, Hybrid],
            trial: "paths::sys_is_readonly",
            reason: v1_cgroup_tmpfs,
        },
        KnownBug {
            runtime: "youki",
            version_prefix: "youki version: 0.7",
            cgroup_modes: &[V1, Hybrid],
            trial: "paths::sys_is_readonly",
            reason: "on cgroup v1 it mounts the tmpfs at /sys/fs/cgroup, and every v1 hierarchy in it, read-write although the config says `ro`",
        },
        KnownBug {
            runtime: "youki",
            version_prefix: "youki version: 0.7",
            cgroup_modes: &[V2],
            trial: "devices::unlisted_device_cannot_be_opened",
            reason: "built without its `cgroupsv2_devices` feature (as `--features v1,v2,seccomp` builds it), it applies no device rules on cgroup v2, silently",
        },
    ]
}
