//! Palisade's scenarios, one file per area, and the entry points shared by the `palisade` command
//! and `cargo test`.

pub mod capabilities;
pub mod entry;
pub mod ipc;
pub mod kernel;
pub mod mounts;
pub mod namespaces;
pub mod paths;
pub mod pid;
pub mod rootfs;
pub mod uts;

use palisade_harness::Scenario;

/// Every scenario, in the order they are listed and run.
pub fn all() -> Vec<&'static Scenario> {
    [
        pid::SCENARIOS,
        namespaces::SCENARIOS,
        uts::SCENARIOS,
        kernel::SCENARIOS,
        rootfs::SCENARIOS,
        paths::SCENARIOS,
        mounts::SCENARIOS,
        ipc::SCENARIOS,
        capabilities::SCENARIOS,
    ]
    .into_iter()
    .flatten()
    .collect()
}
