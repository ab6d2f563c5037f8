//! Palisade's scenarios, one file per area, and the entry points shared by the `palisade` command
//! and `cargo test`.

pub mod cgroups;
pub mod entry;
pub mod kernel;
pub mod namespaces;
pub mod pid;
pub mod uts;

use palisade_harness::Scenario;

/// Every scenario, in the order they are listed and run.
pub fn all() -> Vec<&'static Scenario> {
    [
        pid::SCENARIOS,
        namespaces::SCENARIOS,
        uts::SCENARIOS,
        kernel::SCENARIOS,
        cgroups::SCENARIOS,
    ]
    .into_iter()
    .flatten()
    .collect()
}
